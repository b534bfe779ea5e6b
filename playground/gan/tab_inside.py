"""The GAN tab's "inside" views: latent directions (SeFa / PCA) with who each edited face looks
like, and "find this face" (run live) with interpolation from the found face. Gradio only."""

from __future__ import annotations

import gradio as gr

from playground.core import registry
from playground.core.zerogpu import as_number, gpu_handler
from playground.gan.codes import SEED, found_choices
from playground.ui import friendly, model_event, stop_live_run, stream_live_run, train_event

N_PICKS = 4  # direction rows in the form (the API takes the same four pairs)
BASE_S, PER_FACE_S, HUB_S = 5.0, 0.3, 20.0  # ZeroGPU slot: as the sampling view's (tab.py)

DIRECTIONS_INTRO = """Move a face along **directions in z** found from the generator itself.
**SeFa** (closed form): the top eigenvectors of WᵀW of the first layer, the z-directions that
change its output most. **PCA**: principal components of the first block's activations
(after batch norm and ReLU) over 2000 sampled z, mapped back to z by least squares. Strength is in
standard deviations of z. Under every face: its nearest training photo; the table counts how
often a walk changes the nearest photo's *person* (is the direction just "towards someone"?).
Measured on the shipped model: at strength 3 the top five change the person in 81 % of faces,
about as often as random directions that change the face as much (80 %; research/gan-inside.md)."""

FIND_INTRO = """**Find this face**: optimise z (optionally also an offset to the first layer's
output) until the generator draws the photo (pixel loss, plus a face-identity loss if its weight
is above 0). It runs in the background like training; Stop keeps nothing. The found face then
appears under **Start from** above and below, to edit or interpolate."""


def _hub_extra(model) -> float:
    return HUB_S if isinstance(model, str) and registry.is_hub_id(model.strip()) else 0.0


def edit_seconds(model, start=None, seed=0, method="sefa", frames=9, *picks) -> float:
    """Slot for ``on_edit``: 2 faces + ``frames`` per direction (9 if unreadable), each with
    its nearest photo; PCA adds 2000 first-block passes (well under a second)."""
    return BASE_S + PER_FACE_S * (2 + min(as_number(frames, 9), 9) * N_PICKS) + _hub_extra(model)


def interpolate_seconds(model, start_a=None, seed_a=0, start_b=None, seed_b=1, frames=32,
                        mode="spherical") -> float:
    """Slot for ``on_interpolate_found``: grows with the frames (32 if unreadable)."""
    return BASE_S + PER_FACE_S * min(as_number(frames, 32), 32) + _hub_extra(model)


def _choices(value: str | None = None):
    return gr.update(choices=[SEED, *found_choices()], value=value or SEED)


def _who_line(name: str, who) -> str:
    id_part = f", identity: person {who.id_person}" if who.id_person is not None else ""
    return f"{name}: nearest photo is person {who.person} (d = {who.distance:.3f}){id_part}"


@friendly
@gpu_handler(edit_seconds)
def on_edit(model, start, seed, method, frames, index_1, strength_1, index_2, strength_2,
            index_3, strength_3, index_4, strength_4):
    from playground.gan.inside import edit_along_directions

    pairs = [(index_1, strength_1), (index_2, strength_2), (index_3, strength_3),
             (index_4, strength_4)]
    out = edit_along_directions(model, start, seed, method, pairs, frames)
    if out.who is None:
        note = "Nearest training photos: not available for this model / machine."
    else:
        change = "changes" if out.person_changed else "keeps"
        note = (f"{_who_line('Start', out.who[0])}.  \n{_who_line('Edited', out.who[1])}.  \n"
                f"The edit {change} the nearest photo's person.")
    names = {"sefa": "SeFa", "pca": "PCA"}
    info = f"Start: {out.start}; {names.get(method, method)} directions.\n\n{note}"
    return out.pair_png, out.walk_png, info, out.table(), out.pair_png


@friendly
def on_find(model, photo, upload, steps, mode, id_weight, seed, device):
    from playground.gan.find import found_face, progress_picture, start_find

    run = start_find(model, photo, upload, steps, mode, id_weight, seed, device)
    target = run.kwargs["target"]

    def plot(r):
        import pandas as pd

        rows = [(h["step"], h["rms"]) for h in r.history if "rms" in h]
        return pd.DataFrame(rows, columns=["step", "rms"]) if rows else gr.skip()

    def view(r):
        return progress_picture(target, r.samples[-1][1] if r.samples else None)

    def progress(r):
        if r.state == "queued":
            status = r.waiting_note() or "Queued: waiting for a slot."
        else:
            step = r.history[-1]["step"] if r.history else 0
            rms = f", RMS error {r.history[-1]['rms']:.3f}" if r.history else ""
            status = f"Finding the face: step {step} / {steps}{rms}"
        return (r.run_id, view(r), plot(r), status, *[gr.skip()] * 5)

    def stopped(r):
        return (None, view(r), plot(r), "Stopped: nothing was kept.", *[gr.skip()] * 5)

    def finished(r):
        out = found_face(r.result)
        ident = (f", face-id distance (1 − cosine) {out.id_start:.3f} → {out.id_final:.3f}"
                 if out.id_final is not None else "")
        who = (f" Its nearest training photo is person {out.nearest_person}."
               if out.nearest_person is not None else "")
        status = (f"Done: '{out.name}'. RMS pixel error {out.rms_start:.3f} (best start) → "
                  f"{out.rms_final:.3f}{ident}.{who} It is now under 'Start from'.")
        return (None, view(r), plot(r), status, out.picture_png, out.picture_png,
                _choices(out.name), _choices(out.name), gr.update(choices=[SEED, *found_choices()]))
    # outputs: run id, progress view, RMS plot, status, result, result file, the three "start
    # from" boxes (directions, interpolation from, interpolation to)
    yield from stream_live_run(run, progress, finished, stopped)


@friendly
@gpu_handler(interpolate_seconds)
def on_interpolate_found(model, start_a, seed_a, start_b, seed_b, frames, mode):
    from playground.gan.inside import interpolate_codes

    out = interpolate_codes(model, start_a, seed_a, start_b, seed_b, frames, mode)
    return out.strip_png, out.gif


def build_inside(model: gr.Dropdown) -> None:
    """The two accordions; ``model`` is the tab's model picker."""
    with gr.Accordion("Latent directions (SeFa / PCA)", open=False):
        start = _build_directions(model)
    with gr.Accordion("Find this face", open=False):
        _build_find(model, start)


def _start_box(label: str, elem_id: str | None = None) -> gr.Dropdown:
    # custom values: the API may name a found face this session made
    return gr.Dropdown([SEED], value=SEED, label=label, allow_custom_value=True,
                       elem_id=elem_id, info="'seed', or a face found below")


def _build_directions(model: gr.Dropdown) -> gr.Dropdown:
    gr.Markdown(DIRECTIONS_INTRO)
    with gr.Row():
        start = _start_box("Start from", "gan-dir-start")
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        method = gr.Radio([("SeFa (closed form)", "sefa"), ("PCA of activations", "pca")],
                          value="sefa", label="Directions")
        frames = gr.Slider(3, 9, value=5, step=1, label="Faces per walk")
    picks = []
    with gr.Row():
        for i in range(1, N_PICKS + 1):
            with gr.Column(min_width=160):
                picks.append(gr.Number(value=i, precision=0, minimum=1, label=f"Direction {i}"))
                picks.append(gr.Slider(-10, 10, value=3.0 if i == 1 else 0.0, step=0.5,
                                       label="strength"))
    go = gr.Button("Edit the face", variant="primary", elem_id="gan-edit-go")
    with gr.Row():
        pair = gr.Image(label="Start | edited, nearest training photo under each",
                        type="filepath", elem_id="gan-edit", scale=1)
        walks = gr.Image(label="Each direction alone, −strength … +strength (nearest photo "
                         "under each face)", type="filepath", elem_id="gan-walks", scale=3)
    info = gr.Markdown(elem_id="gan-edit-info")
    table = gr.Dataframe(headers=["direction", "eigenvalue / explained variance", "share",
                                  "strength", "person changes along the walk"],
                         label="Directions used", interactive=False)
    png = gr.File(label="PNG with reproducibility record")
    go.click(on_edit, [model, start, seed, method, frames, *picks],
             [pair, walks, info, table, png], **model_event("gan_directions"))
    return start


def _build_find(model: gr.Dropdown, edit_start: gr.Dropdown) -> None:
    from playground.core.device import device_choices

    gr.Markdown(FIND_INTRO)
    run_id = gr.State(None)
    with gr.Row():
        photo = gr.Number(value=0, precision=0, minimum=0, label="Olivetti photo (0-399; the "
                          "shipped GAN saw all 400)", elem_id="gan-find-photo")
        upload = gr.File(label="...or upload a face photo", file_types=["image"])
        steps = gr.Number(value=300, precision=0, label="Steps", elem_id="gan-find-steps")
        mode = gr.Radio([("z only", "z"), ("z + first-layer offset", "z+layer1")], value="z",
                        label="Optimise")
    with gr.Row():
        id_weight = gr.Slider(0, 2, value=0.1, step=0.05, label="Face-id loss weight")
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed (starting latents)")
        device = gr.Dropdown(device_choices(), value="cpu", label="Device")
    with gr.Row():
        start, stop = (gr.Button("Find this face", variant="primary", elem_id="gan-find-go"),
                       gr.Button("Stop"))
    status = gr.Markdown(elem_id="gan-find-status")
    with gr.Row():
        view = gr.Image(label="Target | current", type="pil", elem_id="gan-find-view")
        plot = gr.LinePlot(x="step", y="rms", label="RMS pixel error (0-1)")
        result = gr.Image(label="Target | found | nearest training photo", type="filepath",
                          elem_id="gan-find-result")
    result_file = gr.File(label="Result PNG with reproducibility record")
    gr.Markdown("**Interpolate** between a found face and a seed (or two found faces).")
    with gr.Row():
        start_a, seed_a = _start_box("From", "gan-find-a"), gr.Number(0, precision=0,
                                                                      label="seed A")
        start_b, seed_b = _start_box("To"), gr.Number(1, precision=0, label="seed B")
        frames = gr.Slider(2, 32, value=8, step=1, label="Frames")
        path = gr.Radio(["spherical", "linear"], value="spherical", label="Path")
    interp = gr.Button("Interpolate", elem_id="gan-find-interpolate")
    with gr.Row():
        strip = gr.Image(label="Strip (PNG with record)", type="filepath", elem_id="gan-find-strip",
                         scale=3)
        gif = gr.Image(label="Animation (GIF)", type="filepath", scale=1)
    start.click(on_find, [model, photo, upload, steps, mode, id_weight, seed, device],
                [run_id, view, plot, status, result, result_file, edit_start, start_a, start_b],
                **train_event("gan_find"))
    stop.click(stop_live_run, run_id, status, queue=False, api_name="gan_find_stop")
    interp.click(on_interpolate_found, [model, start_a, seed_a, start_b, seed_b, frames, path],
                 [strip, gif], **model_event("gan_find_interpolate"))
