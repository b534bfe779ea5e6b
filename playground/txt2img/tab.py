"""The "Text to image" tab: prompt -> images, the denoising steps, PNG info, guidance compare."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from pydantic import RootModel

from playground.core import sessions
from playground.core.seeding import resolve_seed
from playground.core.zerogpu import gpu_handler
from playground.txt2img import EXAMPLES, FAMILY, MAX_TIMESTEP, stopping, suggested_settings
from playground.txt2img.inference import COPIES, SCHEDULERS
from playground.txt2img.slots import BASE_SECONDS, step_seconds
from playground.txt2img.tab_inside import build_inside
from playground.ui import friendly, model_dropdown, model_event, seed_controls

SCHEDULER_NAMES = list(SCHEDULERS)
# Stop runs beside the generation it stops: its own concurrency group, no limit (it only sets
# a flag), never behind the model slot the generation holds
STOP_EVENT = {"api_name": "txt2img_stop", "concurrency_id": "txt2img-stop",
              "concurrency_limit": None}
AFTER_RUN = {"queue": False, "api_visibility": "undocumented"}  # .then(): once a run ended
TRACK_TQDM = gr.Progress(track_tqdm=True)  # the pipeline's step bar and hub downloads' bars


@dataclass
class Generated:
    """What ``generate_on_device`` hands back (plain values: on ZeroGPU they are pickled)."""
    paths: list[str]
    record: dict
    frames: list[str]
    notes: list[str]
    stopped_at: int | None = None
    preview: str | None = None  # the live preview's last frame: the final images, enlarged


@dataclass
class LiveFrame:
    """One frame ``generate_live_on_device`` streams: the batch's x0 estimate after ``step``."""
    step: int
    total: int
    path: str


def record_json(**kwargs) -> gr.JSON:
    """A gr.JSON whose value survives a deep link. Gradio 6.31 keeps JSON's pydantic
    ``JsonData`` in the session state, and the deep link writes it with ``default=str``: the
    reopened page showed the string "root={...}". This one stores (and serves) the plain dict.
    (The instance's ``postprocess`` is wrapped: a gr.JSON subclass would make gradio write a
    .pyi stub beside this file at import.)"""
    component = gr.JSON(**kwargs)
    postprocess = component.postprocess

    def plain(value):
        data = postprocess(value)
        return data.model_dump() if isinstance(data, RootModel) else data
    component.postprocess = plain
    return component


@friendly
def on_model_change(name):
    size, *rest = suggested_settings(name or "")
    return tuple(gr.update(value=v) for v in (size, size, *rest))


def generate_seconds(model, prompt, negative, steps, guidance, scheduler, n_images,
                     width, height, seed, show_steps=True, autoguidance=None,
                     autoguidance_max_t=None, stop_path=None, variation_seed=None,
                     variation_strength=None, live_preview=False) -> float:
    """GPU seconds ``generate_on_device`` (and ``generate_live_on_device``, whose live preview
    decodes every image at each step shown) ask ZeroGPU for, from their own arguments."""
    return BASE_SECONDS + step_seconds(steps, n_images, width, height, show_steps, autoguidance,
                                        live_preview)


def compare_seconds(model, prompt, negative, steps, guidance_a, guidance_b, scheduler,
                    width, height, seed, autoguidance=None, autoguidance_max_t=None,
                    stop_path=None) -> float:
    """GPU seconds ``compare_on_device`` asks for: two one-image runs, no step previews."""
    return BASE_SECONDS + 2 * step_seconds(steps, 1, width, height, False, autoguidance)


@gpu_handler(generate_seconds)
def generate_on_device(model, prompt, negative, steps, guidance, scheduler, n_images,
                       width, height, seed, show_steps=True, autoguidance=None,
                       autoguidance_max_t=None, stop_path=None) -> Generated:
    """The part of ``run_generate`` that runs the pipeline (the GPU part on ZeroGPU).

    On ZeroGPU this runs in a forked worker process (``core.zerogpu`` takes the session and its
    models along and turns our errors into ``gr.Error``); the stop flag is a file, so a Stop
    reaches the worker, and only plain values come back."""
    from playground.txt2img.inference import generate, save_frames

    result = generate(model, prompt, negative, steps, guidance, seed, scheduler, n_images,
                      width, height, show_steps=bool(show_steps), autoguidance=autoguidance,
                      autoguidance_max_t=autoguidance_max_t,
                      stop=lambda: stopping.is_stop_requested(stop_path))
    return Generated([str(p) for p in result.paths], result.record,
                     save_frames(result.trajectory), result.notes, result.stopped_at)


@gpu_handler(generate_seconds)
def generate_live_on_device(model, prompt, negative, steps, guidance, scheduler, n_images,
                            width, height, seed, show_steps=True, autoguidance=None,
                            autoguidance_max_t=None, stop_path=None, variation_seed=None,
                            variation_strength=0.0, live_preview=True):
    """``generate_on_device`` as a stream (``preview.generate_stream``): a ``LiveFrame`` per
    step shown, then the ``Generated``; with seed variation when a strength is given."""
    from playground.txt2img.inference import Extras
    from playground.txt2img.preview import generate_stream, save_picture, upscale
    from playground.txt2img.variation import check_variation, variation_noise

    variation_seed, strength = check_variation(variation_seed, variation_strength)
    extras = None if not strength else Extras(
        noise=variation_noise(variation_seed, strength),
        params={"variation_seed": variation_seed, "variation_strength": strength})
    for frame in generate_stream(
            model, prompt, negative_prompt=negative, steps=steps, guidance=guidance, seed=seed,
            scheduler=scheduler, n_images=n_images, width=width, height=height,
            show_steps=bool(show_steps), autoguidance=autoguidance,
            autoguidance_max_t=autoguidance_max_t, preview=bool(live_preview), extras=extras,
            stop=lambda: stopping.is_stop_requested(stop_path)):
        path = save_picture(frame.image)
        if frame.result is None:
            yield LiveFrame(frame.step, frame.total, path)
            continue
        r = frame.result
        yield Generated([str(p) for p in r.paths], r.record,
                        [save_picture(upscale(f), "txt2img-step") for f in r.trajectory],
                        r.notes, r.stopped_at, path)


def _shown(out: Generated, used: int) -> tuple:
    """The Generate button's outputs for a finished run."""
    note = " ".join(out.notes)
    info = f"Seed used: **{used}**" + (f" — {note}" if note else "")
    frames, last = out.frames, len(out.frames)
    return (out.paths, used, info, out.record, frames,
            gr.update(minimum=1, maximum=max(2, last), value=max(1, last), visible=last > 1),
            out.preview or (frames[-1] if frames else None), frames)


@friendly
def run_generate(model, prompt, negative, steps, guidance, scheduler, n_images, width, height,
                 seed, randomize, show_steps, autoguidance=None, autoguidance_max_t=None,
                 progress=TRACK_TQDM):
    """One response, no stream (scripts; the browser's Generate streams: ``run_generate_live``)."""
    used = resolve_seed(seed, randomize)
    with stopping.running(sessions.current_session()) as stop_path:
        out = generate_on_device(model, prompt, negative, steps, guidance, scheduler,
                                 n_images, width, height, used, show_steps, autoguidance,
                                 autoguidance_max_t, stop_path)
    return _shown(out, used)


@friendly
def run_generate_live(model, prompt, negative, steps, guidance, scheduler, n_images, width,
                      height, seed, randomize, show_steps, autoguidance=None,
                      autoguidance_max_t=None, variation_seed=None, variation_strength=0.0,
                      live_preview=True, progress=TRACK_TQDM):
    """The Generate button (/txt2img): the live preview streams into the step image while the
    model samples; the last update is ``run_generate``'s (API clients get only that one)."""
    used = resolve_seed(seed, randomize)
    with stopping.running(sessions.current_session()) as stop_path:
        for out in generate_live_on_device(model, prompt, negative, steps, guidance, scheduler,
                                           n_images, width, height, used, show_steps,
                                           autoguidance, autoguidance_max_t, stop_path,
                                           variation_seed, variation_strength, live_preview):
            if isinstance(out, LiveFrame):
                # the last run's results give way to the preview. Plain values, not gr.skip():
                # in Gradio 6.31 a skip (a property update) replaces the session's copy of the
                # component with a new one, and a deep link then restores the wrong component
                info = f"Seed used: **{used}** — step {out.step}/{out.total}…"
                yield [], used, info, None, [], gr.skip(), out.path, []
            else:
                yield _shown(out, used)


@friendly
def show_frame(frames, index):
    if not frames:
        return None
    i = int(min(max(1, index or 1), len(frames))) - 1
    return frames[i]


@gpu_handler(compare_seconds)
def compare_on_device(model, prompt, negative, steps, guidance_a, guidance_b, scheduler,
                      width, height, seed, autoguidance=None, autoguidance_max_t=None,
                      stop_path=None) -> tuple[list[str | None], str]:
    """The two pipeline runs of ``run_compare`` (see ``generate_on_device``): the PNG paths
    (None for a run that a Stop kept from starting) and a note on a stop."""
    from playground.txt2img.inference import generate

    def stop() -> bool:
        return stopping.is_stop_requested(stop_path)

    paths: list[str | None] = [None, None]
    for i, (label, g) in enumerate((("A", guidance_a), ("B", guidance_b))):
        result = generate(model, prompt, negative, steps, g, seed, scheduler, 1, width,
                          height, show_steps=False, autoguidance=autoguidance,
                          autoguidance_max_t=autoguidance_max_t, stop=stop)
        paths[i] = str(result.paths[0])
        if result.stopped_at is not None or (i == 0 and stop()):
            done = (f"at step {result.stopped_at}/{result.total_steps}"
                    if result.stopped_at is not None else "after it finished")
            rest = "; guidance B was not run." if i == 0 else "."
            return paths, f"Stopped guidance {label} {done}{rest}"
    return paths, ""


@friendly
def run_compare(model, prompt, negative, steps, guidance_a, guidance_b, scheduler, width, height,
                seed, randomize, autoguidance=None, autoguidance_max_t=None,
                progress=TRACK_TQDM):
    used = resolve_seed(seed, randomize)
    with stopping.running(sessions.current_session()) as stop_path:
        (a, b), note = compare_on_device(model, prompt, negative, steps, guidance_a, guidance_b,
                                         scheduler, width, height, used, autoguidance,
                                         autoguidance_max_t, stop_path)
    return a, b, f"Seed used: **{used}** (same for both)" + (f" — {note}" if note else "")


def clear_text() -> str:
    return ""


@friendly
def stop_generation() -> str:
    """The Stop buttons: end this session's running generation or comparison after the current
    denoising step (other users' runs go on); the images made so far come back."""
    if stopping.request_stop(sessions.current_session()):
        return "Stopping after this step…"
    return "Nothing is running to stop."


@friendly
def restore_from_png(path):
    from playground.txt2img.inference import read_parameters

    p = read_parameters(path)
    variation = p.stored.get("variation_strength", 0.0)
    return (p.model, p.prompt, p.negative_prompt, p.steps, p.guidance, p.scheduler, p.n_images,
            p.width, p.height, p.seed, False, p.stored,
            p.stored.get("variation_seed") if variation else gr.skip(), variation,
            p.autoguidance, p.autoguidance_max_t)


def build_tab() -> None:
    gr.Markdown("Type a prompt and watch noise become a picture. The bundled model was trained "
                "here on 64×64 coloured shapes: describe size, colour, shape, position and "
                "background, e.g. *a small red circle at the top left on a blue background*.")
    with gr.Row():
        with gr.Column(scale=3):
            model = model_dropdown(FAMILY)
            size0, steps0, guidance0, auto0, auto_t0 = suggested_settings(model.value or "")
            prompt = gr.Textbox(label="Prompt", lines=2, value=EXAMPLES[0])
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="optional")
            with gr.Row():
                steps = gr.Slider(1, 100, value=steps0, step=1, label="Steps",
                                  elem_id="txt2img-steps")
                guidance = gr.Slider(0, 30, value=guidance0, step=0.5, label="Guidance scale")
            with gr.Row():
                autoguidance = gr.Slider(
                    0, 5, value=auto0, step=0.25, label="Autoguidance",
                    info="push away from the model's weaker checkpoint; 0 = off")
                autoguidance_max_t = gr.Slider(
                    0, MAX_TIMESTEP, value=auto_t0, step=10, label="Autoguidance up to timestep",
                    info="only at t ≤ this (999 = pure noise)")
            with gr.Row():
                scheduler = gr.Dropdown(SCHEDULER_NAMES, value="DDIM", label="Scheduler")
                n_images = gr.Slider(1, 4, value=1, step=1, label="Number of images")
            with gr.Row():
                width = gr.Number(size0, precision=0, label="Width",
                                  info="ours: multiples of 8, 32-128; SD: multiples of 64")
                height = gr.Number(size0, precision=0, label="Height")
            seed, randomize = seed_controls()
            with gr.Accordion("Seed variation: blend in a second seed's noise", open=False):
                with gr.Row():
                    variation_seed = gr.Number(1, precision=0, minimum=0, label="Variation seed")
                    variation_strength = gr.Slider(
                        0, 1, value=0, step=0.05, label="Variation strength",
                        info="0 = the seed's image, 1 = the variation seed's")
            with gr.Row():
                live_preview = gr.Checkbox(True, label="Live preview")
                show_steps = gr.Checkbox(True, label="Show every denoising step")
            with gr.Row():
                button = gr.Button("Generate", variant="primary", elem_id="txt2img-generate",
                                   scale=3)
                stop = gr.Button("Stop", variant="stop", elem_id="txt2img-stop", scale=1)
            stop_info = gr.Markdown(elem_id="txt2img-stop-info")
            gr.Examples([[e] for e in EXAMPLES], inputs=[prompt], label="Example prompts")
        with gr.Column(scale=4):
            # fit_columns=False: by default a lone image grows to the full width, taller than the
            # gallery, which then showed only its top half (an object at the bottom was hidden)
            gallery = gr.Gallery(label="Images (PNG with parameters)", columns=2, height="auto",
                                 fit_columns=False, format="png", elem_id="txt2img-gallery")
            with gr.Row():
                seed_info = gr.Markdown(elem_id="txt2img-seed")
                # a link that reopens the page with these settings and results (a teacher's
                # example for the class)
                gr.DeepLinkButton(size="md", scale=0, min_width=180)
            seed_used = gr.Number(visible=False, precision=0)
            with gr.Group():
                step_image = gr.Image(label="Live preview: the model's guess of the final "
                                      "images at this step", type="filepath", height=320,
                                      interactive=False, elem_id="txt2img-live")
                scrubber = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False)
                strip = gr.Gallery(label="Denoising, step by step", columns=10, rows=1,
                                   height=130, allow_preview=False, elem_id="txt2img-strip")
            record = record_json(label="Reproducibility record", elem_id="txt2img-record")
    frames = gr.State([])
    inputs = [model, prompt, negative, steps, guidance, scheduler, n_images, width, height, seed,
              randomize, show_steps, autoguidance, autoguidance_max_t,  # last: older calls work
              variation_seed, variation_strength, live_preview]
    button.click(run_generate_live, inputs, [gallery, seed_used, seed_info, record, strip, scrubber,
                                        step_image, frames], **model_event("txt2img", slots=COPIES)
                 ).then(clear_text, None, stop_info, **AFTER_RUN)
    stop.click(stop_generation, None, stop_info, **STOP_EVENT)
    scrubber.change(show_frame, [frames, scrubber], step_image, api_visibility="undocumented")
    model.change(on_model_change, model, [width, height, steps, guidance, autoguidance,
                                          autoguidance_max_t], api_visibility="undocumented")
    _build_compare(model, prompt, negative, steps, scheduler, width, height, seed, randomize,
                   autoguidance, autoguidance_max_t, stop_info)
    build_inside({"model": model, "prompt": prompt, "negative": negative, "steps": steps,
                  "guidance": guidance, "scheduler": scheduler, "width": width,
                  "height": height, "seed": seed, "randomize": randomize,
                  "autoguidance": autoguidance, "autoguidance_max_t": autoguidance_max_t,
                  "variation_seed": variation_seed, "variation_strength": variation_strength},
                 record_json, stop_generation)
    with gr.Accordion("PNG info: drop a PNG made here to restore its settings", open=False):
        png = gr.File(label="PNG", file_types=[".png"], type="filepath")
        png_params = record_json(label="Parameters in the PNG")
    png.upload(restore_from_png, png, [model, prompt, negative, steps, guidance, scheduler,
                                       n_images, width, height, seed, randomize, png_params,
                                       variation_seed, variation_strength, autoguidance,
                                       autoguidance_max_t],
               api_name="txt2img_png_info")


def _build_compare(model, prompt, negative, steps, scheduler, width, height, seed, randomize,
                   autoguidance, autoguidance_max_t, stop_info):
    with gr.Accordion("Compare two guidance scales (same seed)", open=False):
        with gr.Row():
            guidance_a = gr.Slider(0, 30, value=1.0, step=0.5, label="Guidance A")
            guidance_b = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance B")
        with gr.Row():
            compare = gr.Button("Compare", scale=3)
            stop = gr.Button("Stop", variant="stop", scale=1)
        with gr.Row():
            image_a = gr.Image(label="Guidance A", type="filepath", format="png", height=200)
            image_b = gr.Image(label="Guidance B", type="filepath", format="png", height=200)
        compare_info = gr.Markdown()
    compare.click(run_compare, [model, prompt, negative, steps, guidance_a, guidance_b, scheduler,
                                width, height, seed, randomize, autoguidance,
                                autoguidance_max_t],
                  [image_a, image_b, compare_info], **model_event("txt2img_compare", slots=COPIES)
                  ).then(clear_text, None, stop_info, **AFTER_RUN)
    stop.click(stop_generation, None, stop_info, **{**STOP_EVENT, "api_name": None,
                                                    "api_visibility": "undocumented"})
