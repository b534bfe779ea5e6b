"""The VAE tab: interpolate, reconstruct, sample, explore the latent, map every face's code,
train live with a β (KL weight) control."""

from __future__ import annotations

import gradio as gr

from playground.core import registry
from playground.core.seeding import MAX_SEED
from playground.core.zerogpu import as_number, gpu_handler
from playground.ui import (
    friendly,
    model_dropdown,
    model_event,
    seed_controls,
    stop_live_run,
    stream_live_run,
    train_event,
)
from playground.vae import FAMILY
from playground.vae.slots import BASE_S, PER_IMAGE_S, hub_extra
from playground.vae.tab_inside import build_map_section

INTRO = """The VAE turns a face into a **code** of 32 numbers (the mean of its posterior) and turns
codes back into faces. Pick two faces of **held-out people** (the model never saw them; click the
gallery) or upload photos (made grey, centre-cropped to a square and shrunk to 64×64, as shown),
then walk from one code to the other: **linear** is a straight line, **spherical** follows the
great circle (keeps the code's length typical). Tick *through the mean* to compare with the path
that passes the average code 0. Hub ids work here too where the hub is reachable: a diffusers
AutoencoderKL such as the Stable Diffusion VAE (colour, up to 256 px) or a ConvVAE saved by this
playground (e.g. vae-olivetti pushed to the hub); the repo's config.json tells which."""

BETA_INTRO = """Loss = reconstruction + **β** · KL: the KL pulls every code to the prior N(0, I),
the reconstruction wants codes that tell faces apart. β = 0: nothing pulls (the KL grows); a
large β wins (KL falls, faces blur). β ramps up from 0 over the first sixth of the steps."""
N_SLIDERS = 6  # on_explore takes one coefficient each
# model handlers show huggingface_hub's download bars (tqdm) while a hub model is fetched
TRACK_DOWNLOADS = gr.Progress(track_tqdm=True)

def interpolate_seconds(model, face_a=None, upload_a=None, face_b=None, upload_b=None, frames=10,
                        mode="spherical", through_mean=False, progress=None) -> float:
    images = as_number(frames, 64) * (2 if through_mean else 1)
    return BASE_S + PER_IMAGE_S * images + hub_extra(model)


def reconstruct_seconds(model, face=None, upload=None, progress=None) -> float:
    return BASE_S + PER_IMAGE_S * 8 + hub_extra(model)  # 8 posterior samples for the ELBO


def sample_seconds(model, seed=0, randomize=False, n=8, temperature=1.0,
                   progress=None) -> float:
    return BASE_S + PER_IMAGE_S * as_number(n, 64) + hub_extra(model)


def explore_seconds(model, *coefficients_and_progress) -> float:
    return BASE_S + 7.0 + hub_extra(model)  # the first call encodes the faces for the PCA


def _heldout_labels() -> list[str]:
    """The held-out faces' labels ("person 10 · photo 0"), read when the tab is built, so the
    dropdowns accept them from the first request: the browser's and the API's alike."""
    from playground.vae.inference import heldout_faces

    return heldout_faces().labels


def _gallery():
    """The held-out faces with their labels as captions (sent when the page opens)."""
    from playground.vae.images import to_pil, to_tensor
    from playground.vae.inference import heldout_faces

    faces = heldout_faces()
    return [(to_pil(to_tensor(img)[0], 1), label)
            for img, label in zip(faces.images, faces.labels, strict=True)]


def _face_dropdown(label: str, labels: list[str], index: int, **kwargs) -> gr.Dropdown:
    value = labels[index % len(labels)] if labels else None
    return gr.Dropdown(choices=labels, value=value, label=label, **kwargs)


def on_pick(target, evt: gr.SelectData):
    """A click on the gallery sets face A or B (and flips the target for the next click)."""
    label = evt.value.get("caption") if isinstance(evt.value, dict) else None
    if not label:
        return gr.update(), gr.update(), target
    if target == "A":
        return label, gr.update(), "B"
    return gr.update(), label, "A"


@friendly
@gpu_handler(interpolate_seconds)
def on_interpolate(model, face_a, upload_a, face_b, upload_b, frames, mode, through_mean,
                   progress=TRACK_DOWNLOADS):
    from playground.vae.inference import interpolate_faces

    out = interpolate_faces(model, face_a, face_b, upload_a, upload_b, frames, mode,
                            bool(through_mean))
    info = (f"{out.record['params']['face_a']} → {out.record['params']['face_b']}, "
            f"{len(out.frames)} frames, {mode} path. Largest frame-to-frame change "
            f"{out.steps.max():.3f} = {out.unevenness:.2f}× the median (RMS pixel change; "
            "1 = perfectly even).")
    return (out.strip_png, out.gif, out.preview_a, out.preview_b, out.mean_strip_png, info)


@friendly
@gpu_handler(reconstruct_seconds)
def on_reconstruct(model, face, upload, progress=TRACK_DOWNLOADS):
    from playground.vae.inference import reconstruct_face

    out = reconstruct_face(model, face, upload)
    info = f"Input | reconstruction | error (black = exact). MSE {out.mse:.4f}"
    if out.bits_per_dim is not None:
        info += f", -ELBO {out.bits_per_dim:.3f} bits/dim (8 = no better than uniform noise)"
    return out.image_png, info + "."


@friendly
@gpu_handler(sample_seconds)
def on_sample(model, seed, randomize, n, temperature, progress=TRACK_DOWNLOADS):
    from playground.vae.inference import sample_faces

    out = sample_faces(model, seed, randomize, n, temperature)
    return (out.images, out.grid_png, f"Seed used: {out.seed} (temperature {temperature}).",
            out.seed)


@friendly
@gpu_handler(explore_seconds)
def on_explore(model, c1=0.0, c2=0.0, c3=0.0, c4=0.0, c5=0.0, c6=0.0,
               progress=TRACK_DOWNLOADS):
    """One coefficient per slider (N_SLIDERS); named, so gradio can still add ``progress``."""
    from playground.vae.inference import explore

    out = explore(model, c1, c2, c3, c4, c5, c6)
    return out.image, out.info


def _train_stream(steps, device, latent_dim, beta, seed):
    """Train in a worker process and stream (run id, -ELBO curve, reconstruction term, KL
    terms, grid, record file, status, model dropdown); a queued run's status says what for."""
    from playground.vae import live

    run = live.start_training(steps, device, latent_dim, beta, seed)
    steps, beta, seed = (run.kwargs[k] for k in ("steps", "beta", "seed"))  # as checked

    def progress(r):
        status = r.waiting_note() or live.progress_note(r.history, steps, beta, seed)
        return (r.run_id, *live.curves(r.history), live.latest_grid(r), None, status,
                gr.update())

    def finished(r):
        return (None, *live.curves(r.history), live.latest_grid(r),
                live.write_training_record(r), f"Done: '{r.result}' is now in the model list.",
                gr.update(choices=registry.choices(FAMILY), value=r.result))

    def stopped(r):
        return (None, *live.curves(r.history), live.latest_grid(r), None,
                "Stopped: nothing was saved.", gr.update())

    yield from stream_live_run(run, progress, finished, stopped)


@friendly
def on_train(steps, device, latent_dim, beta=1.0, seed=0):
    """The tab's training stream (route ``vae_train``): see ``_train_stream``."""
    yield from _train_stream(steps, device, latent_dim, beta, seed)


on_stop = stop_live_run  # shared Stop-button handler (playground.ui)


def build_tab() -> None:
    gr.Markdown(INTRO)
    model = model_dropdown(FAMILY)
    labels = _heldout_labels()
    gallery = _interpolate_section(model, labels)
    _reconstruct_section(model, labels)
    _sample_section(model)
    _explorer_section(model)
    build_map_section(model)
    _training_section(model)
    root = gr.context.Context.root_block
    if root is not None:
        root.load(_gallery, None, gallery, api_visibility="private")


def _interpolate_section(model, labels: list[str]):
    """Pick (gallery click, dropdown or upload) two faces and walk between their codes."""
    target = gr.State("A")
    with gr.Accordion("Interpolate between two faces", open=True):
        gallery = gr.Gallery(label="Held-out faces (click: sets face A, then face B)", columns=10,
                             height=220, allow_preview=False, elem_id="vae-heldout")
        with gr.Row():
            with gr.Column():
                face_a = _face_dropdown("Face A (held-out)", labels, 0, elem_id="vae-face-a")
                upload_a = gr.File(label="...or upload photo A", file_types=["image"],
                                   elem_id="vae-upload-a")
            with gr.Column():
                face_b = _face_dropdown("Face B (held-out)", labels, 10, elem_id="vae-face-b")
                upload_b = gr.File(label="...or upload photo B", file_types=["image"],
                                   elem_id="vae-upload-b")
            with gr.Column():
                frames = gr.Slider(2, 64, value=10, step=1, label="Frames")
                mode = gr.Radio(["spherical", "linear"], value="spherical", label="Path")
                through_mean = gr.Checkbox(label="Also show the path through the mean code")
                interp = gr.Button("Interpolate", variant="primary", elem_id="vae-interpolate")
        with gr.Row():
            preview_a = gr.Image(label="A as the model sees it", type="pil", height=160)
            preview_b = gr.Image(label="B as the model sees it", type="pil", height=160)
            gif = gr.Image(label="Animation (GIF)", type="filepath", elem_id="vae-gif",
                           height=160)
        strip = gr.Image(label="Strip (PNG with reproducibility record)", type="filepath",
                         elem_id="vae-strip", height=170)
        mean_strip = gr.Image(label="Through the mean code (when ticked)", type="filepath",
                              height=170)
        with gr.Row(elem_id="vae-share"):
            interp_info = gr.Markdown(elem_id="vae-interp-info")
            # a link that reopens this page with the result and the settings that made it
            gr.DeepLinkButton(size="md", scale=0, min_width=180)
    gallery.select(on_pick, target, [face_a, face_b, target])
    interp.click(on_interpolate, [model, face_a, upload_a, face_b, upload_b, frames, mode,
                                  through_mean],
                 [strip, gif, preview_a, preview_b, mean_strip, interp_info],
                 **model_event("vae_interpolate"))
    return gallery


def _reconstruct_section(model, labels: list[str]) -> None:
    with gr.Accordion("Reconstruct a face", open=False):
        with gr.Row():
            face_r = _face_dropdown("Held-out face", labels, 0)
            upload_r = gr.File(label="...or upload a photo", file_types=["image"])
            recon_btn = gr.Button("Reconstruct")
        recon = gr.Image(label="Input | reconstruction | error", type="filepath")
        recon_info = gr.Markdown()
    recon_btn.click(on_reconstruct, [model, face_r, upload_r], [recon, recon_info],
                    **model_event("vae_reconstruct"))


def _sample_section(model) -> None:
    with gr.Accordion("Sample new faces from the prior", open=False):
        with gr.Row():
            seed, randomize = seed_controls()
            n = gr.Number(value=8, precision=0, label="Number of faces (1-64)")
            temperature = gr.Slider(0, 2, value=1.0, step=0.05,
                                    label="Temperature (scales z; 0 = the mean face)")
        sample_btn = gr.Button("Sample", elem_id="vae-sample")
        samples = gr.Gallery(label="Samples", columns=8, height=260, fit_columns=False,
                             elem_id="vae-samples")
        grid_file = gr.File(label="Grid PNG (with reproducibility record)")
        sample_info = gr.Markdown()
    sample_btn.click(on_sample, [model, seed, randomize, n, temperature],
                     [samples, grid_file, sample_info, seed], **model_event("vae_sample"))


def _explorer_section(model) -> None:
    with gr.Accordion("Latent explorer: slide along the main directions", open=False):
        sliders = [gr.Slider(-3, 3, value=0, step=0.1, label=f"Direction {k + 1} (std units)")
                   for k in range(N_SLIDERS)]
        with gr.Row():
            explore_btn = gr.Button("Show")
            reset = gr.Button("Reset to the average code")
        explored = gr.Image(label="Decoded code", type="pil", height=256)
        explore_info = gr.Markdown()
    explore_inputs = [model, *sliders]
    explore = model_event(None, "vae")
    explore_btn.click(on_explore, explore_inputs, [explored, explore_info], **explore)
    for slider in sliders:
        slider.release(on_explore, explore_inputs, [explored, explore_info], **explore)
    reset.click(lambda: [0.0] * N_SLIDERS, None, sliders).then(
        on_explore, explore_inputs, [explored, explore_info], **explore)


def _training_section(model) -> None:
    from playground.core.device import device_choices
    from playground.vae.live import MAX_BETA

    with gr.Accordion("Train a VAE here (live): the β tug-of-war", open=False):
        gr.Markdown(BETA_INTRO)
        with gr.Row():
            steps = gr.Number(value=300, precision=0, label="Steps (batches of 32)")
            device = gr.Dropdown(device_choices(), value="cpu", label="Device")
            latent = gr.Number(value=32, precision=0, label="Latent size")
        with gr.Row():
            beta = gr.Slider(0, MAX_BETA, value=1.0, step=0.05, elem_id="vae-beta",
                             label="β: weight of the KL term (1 = the true ELBO)")
            seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
        with gr.Row():
            start, stop = gr.Button("Start training", variant="primary"), gr.Button("Stop")
        run_id = gr.State(None)
        status = gr.Markdown()
        curve = gr.LinePlot(x="step", y="value", color="series", label="-ELBO (bits/dim)")
        with gr.Row():
            recon = gr.LinePlot(x="step", y="value", color="series", elem_id="vae-recon-plot",
                                label="Reconstruction term (nats per face)")
            kl = gr.LinePlot(x="step", y="value", color="series", elem_id="vae-kl-plot",
                             label="KL term (nats per face)")
        fixed = gr.Image(label="Decoded fixed codes as training goes", type="pil")
        record = gr.File(label="Both terms per logged step + reproducibility record (JSON)")
    start.click(on_train, [steps, device, latent, beta, seed],
                [run_id, curve, recon, kl, fixed, record, status, model],
                **train_event("vae_train"))
    stop.click(on_stop, run_id, status, queue=False, api_name="vae_train_stop")
