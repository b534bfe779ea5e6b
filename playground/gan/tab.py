"""The GAN tab: sample faces, truncate, interpolate, see the nearest training photo, train live
(the latent-direction and "find this face" views are in ``tab_inside.py``)."""

from __future__ import annotations

import gradio as gr

from playground.core import registry
from playground.core.zerogpu import as_number, gpu_handler
from playground.gan import FAMILY
from playground.ui import (
    friendly,
    model_dropdown,
    model_event,
    seed_controls,
    stop_live_run,
    stream_live_run,
    train_event,
)

INTRO = """Each face comes from its own seed (noise vector z). **Truncation ψ** scales z towards
the mean latent 0: ψ = 1 is the plain generator, smaller ψ gives more typical faces, ψ = 0 the
same "mean face" for every seed. Beside each sample is its **nearest training photo** (RMS pixel
distance, 0 = identical): a sample far closer than two photos of one person would be a copy.
Click a face to reuse its seed."""


# ---- ZeroGPU slots (seconds), from the request ------------------------------------------
# On a GPU our 64 px DCGAN makes 64 faces in a few milliseconds; the time goes to the nearest
# training photo of each face and one PNG per face plus the grid (CPU work: 16 faces take
# 0.13 s on one core here, bench/gan.py), and the GIF's frames. The per-item rates are ~30x
# that, for a busy shared CPU; the base covers moving the model and building the nearest-photo
# cache on a first call; a hub id adds time to fetch it inside the slot. Shorter slots queue
# first on ZeroGPU, so the default 8 faces ask for 7 s and 64 faces for 21 s.
BASE_S = 5.0
PER_FACE_S = 0.25  # nearest photo + PNG with its record
PER_FRAME_S = 0.4  # a strip column + two GIF frames (there and back)
HUB_S = 20.0  # a hub id: download and move to the GPU inside the slot
TRACK_TQDM = gr.Progress(track_tqdm=True)  # a hub id's download bars, in the browser


def _hub_extra(model) -> float:
    return HUB_S if isinstance(model, str) and registry.is_hub_id(model.strip()) else 0.0


def sample_seconds(model, seed=0, randomize=False, n=8, psi=1.0, seed_list="",
                   progress=None) -> float:
    """Slot for ``on_sample``: the listed seeds, else ``n`` faces (64 if unreadable)."""
    listed = len(str(seed_list or "").replace(",", " ").replace(";", " ").split())
    faces = listed or min(as_number(n, 64), 64)
    return BASE_S + PER_FACE_S * faces + _hub_extra(model)


def interpolate_seconds(model, seed_a=0, seed_b=1, frames=8, mode="spherical", psi=1.0,
                        progress=None) -> float:
    """Slot for ``on_interpolate``: grows with the frames (32 if unreadable)."""
    return BASE_S + PER_FRAME_S * min(as_number(frames, 32), 32) + _hub_extra(model)


@friendly
@gpu_handler(sample_seconds)
def on_sample(model, seed, randomize, n, psi, seed_list, progress=TRACK_TQDM):
    from playground.gan.inference import sample_faces

    out = sample_faces(model, seed, randomize, n, psi, seed_list)
    faces = [(png, f"seed {s}") for png, s in zip(out.face_pngs, out.seeds, strict=True)]
    near_out = out.nearest
    if near_out is None:
        near, note = [], "Nearest training photos: not available for this model / machine."
    else:
        near = [(img, f"d = {d:.3f}") for img, d in zip(near_out.images, near_out.distances,
                                                         strict=True)]
        note = (f"Nearest training photo distances: min {min(near_out.distances):.3f}, typical "
                f"two photos of one person {near_out.same_person_median:.3f} (closest 5%: "
                f"{near_out.same_person_p05:.3f}); {near_out.closer_than_p05} of {len(near)} "
                "samples are closer than that 5% mark.")
    info = f"Seeds used: {', '.join(map(str, out.seeds))} (ψ = {psi}).\n\n{note}"
    return faces, near, info, out.seeds, out.grid_png, out.seeds[0]


def on_select(seeds, evt: gr.SelectData):
    seed = int(seeds[evt.index]) if seeds and evt.index is not None else 0
    return seed, False, "", seed


@friendly
@gpu_handler(interpolate_seconds)
def on_interpolate(model, seed_a, seed_b, frames, mode, psi, progress=TRACK_TQDM):
    from playground.gan.inference import interpolate_faces

    out = interpolate_faces(model, seed_a, seed_b, frames, mode, psi)
    return out.strip_png, out.gif, out.strip_png


def _plots(history: list[dict]):
    import pandas as pd

    if not history:  # an empty first frame leaves the plot blank for good: send nothing yet
        return gr.skip(), gr.skip()

    def frame(pairs) -> pd.DataFrame:
        rows = [(r["step"], float(r[k]), name) for r in history for k, name in pairs if k in r]
        return pd.DataFrame(rows, columns=["step", "value", "series"])
    return (frame((("loss_d", "D loss"), ("loss_g", "G loss"))),
            frame((("d_x", "D(x) on real"), ("d_g_z", "D(G(z)) on fakes"))))


def _fixed_grid(samples):
    """The latest fixed-noise samples (16, 1, S, S) as a 2x8 grid, enlarged for display."""
    from PIL import Image

    from playground.gan.inference import grid_image

    if not samples:
        return None
    grid = grid_image(samples[-1][1], 8)
    scale = max(1, 128 // samples[-1][1].shape[-1])
    return grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)


@friendly
def on_train(mode, model, size, device, steps):
    from playground.gan.live import start_training

    run = start_training(mode, model, size, device, steps)

    def progress(r):
        if r.state == "queued":  # waiting for a training slot: say for what
            status = r.waiting_note() or "Queued: waiting for a training slot."
        else:
            step = r.history[-1]["step"] if r.history else 0
            status = f"Training ({mode}, {size} px, {device}): step {step} / {steps}"
        return (r.run_id, *_plots(r.history), _fixed_grid(r.samples), status, gr.update())

    def stopped(r):
        return (None, *_plots(r.history), _fixed_grid(r.samples), "Stopped: nothing was saved.",
                gr.update())

    def finished(r):
        return (None, *_plots(r.history), _fixed_grid(r.samples),
                f"Done: '{r.result}' is now in the model list.",
                gr.update(choices=registry.choices(FAMILY), value=r.result))
    # outputs: run id, loss plot, D(x) plot, fixed-noise grid, status, model dropdown
    yield from stream_live_run(run, progress, finished, stopped)


on_stop = stop_live_run  # shared Stop-button handler (playground.ui)


GALLERY_PX = 480  # two rows of four faces (the default eight) without scrolling


def build_tab() -> None:
    gr.Markdown(INTRO)
    model = model_dropdown(FAMILY)
    seeds_state = gr.State([])
    with gr.Row():
        with gr.Column(scale=1):
            seed, randomize = seed_controls()
            n = gr.Number(value=8, precision=0, label="Number of faces (1-64)",
                          elem_id="gan-n")
            psi = gr.Slider(0, 2, value=1.0, step=0.05, label="Truncation ψ (0 = mean face)")
            seed_list = gr.Textbox(label="Or a list of seeds", placeholder="e.g. 3, 17, 42")
            go = gr.Button("Generate faces", variant="primary", elem_id="gan-generate")
        with gr.Column(scale=3):
            # four faces a row: each drawn ~200 px on a laptop screen, where a face reads
            gallery = gr.Gallery(label="Samples (click one to reuse its seed)", columns=4,
                                 height=GALLERY_PX, fit_columns=False, format="png",
                                 elem_id="gan-samples")
            nearest = gr.Gallery(label="Nearest training photo of each sample", columns=4,
                                 height=GALLERY_PX, fit_columns=False, format="png",
                                 elem_id="gan-nearest")
            info = gr.Markdown(elem_id="gan-info")
            with gr.Row(equal_height=True):
                grid_file = gr.File(label="Grid PNG (with reproducibility record)", scale=3)
                with gr.Column(scale=1, min_width=160, elem_id="gan-share"):
                    # a link that reopens this tab with these settings and faces
                    gr.DeepLinkButton()
    with gr.Accordion("Interpolate between two seeds", open=True):
        with gr.Row():
            seed_a = gr.Number(value=0, precision=0, label="Seed A", elem_id="gan-seed-a")
            seed_b = gr.Number(value=1, precision=0, label="Seed B")
            frames = gr.Slider(2, 32, value=8, step=1, label="Frames")
            mode = gr.Radio(["spherical", "linear"], value="spherical", label="Path")
        interp = gr.Button("Interpolate", elem_id="gan-interpolate")
        strip = gr.Image(label="Strip", type="filepath", elem_id="gan-strip")
        with gr.Row():
            gif = gr.Image(label="Animation (GIF)", type="filepath")
            strip_file = gr.File(label="Strip PNG")
    go.click(on_sample, [model, seed, randomize, n, psi, seed_list],
             [gallery, nearest, info, seeds_state, grid_file, seed_a], **model_event("gan_sample"))
    gallery.select(on_select, seeds_state, [seed, randomize, seed_list, seed_a])
    interp.click(on_interpolate, [model, seed_a, seed_b, frames, mode, psi],
                 [strip, gif, strip_file], **model_event("gan_interpolate"))
    from playground.gan.tab_inside import build_inside

    build_inside(model)  # latent directions; find this face (tab_inside.py)
    _build_training(model)


def _build_training(model: gr.Dropdown) -> None:
    """The "Train a GAN here (live)" accordion; a finished run is selected in ``model``."""
    from playground.core.device import device_choices

    run_id = gr.State(None)
    with gr.Accordion("Train a GAN here (live)", open=False):
        with gr.Row():
            train_mode = gr.Radio(["scratch", "continue"], value="scratch",
                                  label="From scratch, or continue the selected model")
            size = gr.Radio([32, 64], value=32, label="Image size (px)")
            device = gr.Dropdown(device_choices(), value="cpu", label="Device")
            steps = gr.Number(value=300, precision=0, label="Steps (batches of 64)")
        with gr.Row():
            start, stop = gr.Button("Start training", variant="primary"), gr.Button("Stop")
        status = gr.Markdown()
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="value", color="series", label="D and G losses")
            prob_plot = gr.LinePlot(x="step", y="value", color="series",
                                    label="D(x) and D(G(z))", y_lim=[0, 1])
        fixed = gr.Image(label="Fixed-noise samples as training goes", type="pil")
    start.click(on_train, [train_mode, model, size, device, steps],
                [run_id, loss_plot, prob_plot, fixed, status, model], **train_event("gan_train"))
    stop.click(on_stop, run_id, status, queue=False, api_name="gan_train_stop")
