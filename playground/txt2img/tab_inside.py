"""Two views under the Text to image tab's controls: the attention of each word over the image
(/txt2img_attention) and the X/Y grid of settings (/txt2img_grid).

They read the tab's own controls (model, prompt, steps, seed ...), so a view shows the image
Generate would make. The main tab (``txt2img/tab.py``) passes in its controls and the two
helpers it owns (the record component and the Stop handler): this module cannot import it,
since it imports this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from playground.core import sessions
from playground.core.seeding import resolve_seed
from playground.core.zerogpu import gpu_handler
from playground.txt2img import EXAMPLES, stopping
from playground.txt2img.attention import prompt_words
from playground.txt2img.grid import AXES, NO_AXIS
from playground.txt2img.inference import COPIES
from playground.txt2img.slots import BASE_SECONDS, step_seconds
from playground.ui import friendly, model_event

TRACK_TQDM = gr.Progress(track_tqdm=True)
STOP = {"api_name": None, "concurrency_id": "txt2img-stop", "concurrency_limit": None,
        "api_visibility": "undocumented"}  # as the tab's Stop: beside the run it stops
DEFAULT_WORD = "circle"  # in the tab's first example prompt


# ---- attention ---------------------------------------------------------------------------

def attention_seconds(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                      autoguidance=None, autoguidance_max_t=None, word=None,
                      stop_path=None) -> float:
    """GPU seconds for ``attention_on_device``: one image, the attention read at every step."""
    return BASE_SECONDS + 1.5 * step_seconds(steps, 1, width, height, False, autoguidance)


@dataclass
class AttentionShown:
    overlay: str
    strip: list[tuple[str, str]]
    record: dict
    notes: list[str] = field(default_factory=list)
    share: float = 0.0
    word: str = ""


@gpu_handler(attention_seconds)
def attention_on_device(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                        autoguidance=None, autoguidance_max_t=None, word=None,
                        stop_path=None) -> AttentionShown:
    from playground.txt2img.attention import explain

    view = explain(model, prompt, word, negative, steps, guidance, seed, scheduler, width,
                   height, autoguidance, autoguidance_max_t,
                   stop=lambda: stopping.is_stop_requested(stop_path))
    return AttentionShown(str(view.overlay_path), [(str(p), c) for p, c in view.strip],
                          view.record, view.notes, view.chosen.share, view.chosen.word)


@friendly
def run_attention(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                  randomize, autoguidance, autoguidance_max_t, word, progress=TRACK_TQDM):
    used = resolve_seed(seed, randomize)
    with stopping.running(sessions.current_session()) as stop_path:
        out = attention_on_device(model, prompt, negative, steps, guidance, scheduler, width,
                                  height, used, autoguidance, autoguidance_max_t, word,
                                  stop_path)
    info = (f"Seed used: **{used}** — *{out.word}* received **{out.share:.1%}** of the "
            "cross-attention (mean over pixels, heads, layers and steps; the start token "
            "takes most of the rest). Bright = where it acted most.")
    return out.overlay, out.strip, " ".join([info, *out.notes]), out.record


@friendly
def words_of(prompt, current):
    """The word list follows the prompt; the chosen word stays while the prompt holds it."""
    words = list(dict.fromkeys(prompt_words(prompt or "")))
    keep = current if current and all(w in words for w in prompt_words(current)) else None
    return gr.update(choices=words, value=keep or (max(words, key=len) if words else None))


# ---- X/Y grid ----------------------------------------------------------------------------

def grid_seconds(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                 autoguidance=None, autoguidance_max_t=None, variation_seed=None,
                 variation_strength=None, x_axis=None, x_values=None, y_axis=None,
                 y_values=None, stop_path=None) -> float:
    """GPU seconds for ``grid_on_device``: the steps of every cell (from the plan)."""
    from playground.txt2img.grid import plan_grid

    plan = plan_grid(model, prompt, x_axis, x_values, y_axis, y_values, steps=steps,
                     guidance=guidance, scheduler=scheduler, width=width, height=height,
                     autoguidance=autoguidance)
    return BASE_SECONDS + sum(step_seconds(c["steps"], 1, width, height, False, autoguidance)
                              for c in plan.cells)


@dataclass
class GridShown:
    done: int
    total: int
    path: str
    record: dict | None = None
    notes: list[str] = field(default_factory=list)


@gpu_handler(grid_seconds)
def grid_on_device(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                   autoguidance=None, autoguidance_max_t=None, variation_seed=None,
                   variation_strength=None, x_axis=None, x_values=None, y_axis=None,
                   y_values=None, stop_path=None):
    """The grid made cell by cell: a ``GridShown`` after each (the last one with its record)."""
    from playground.txt2img.grid import plan_grid, run_grid
    from playground.txt2img.preview import save_picture

    plan = plan_grid(model, prompt, x_axis, x_values, y_axis, y_values,
                     negative_prompt=negative, steps=steps, guidance=guidance, seed=seed,
                     scheduler=scheduler, width=width, height=height,
                     autoguidance=autoguidance, autoguidance_max_t=autoguidance_max_t,
                     variation_seed=variation_seed, variation_strength=variation_strength)
    for step in run_grid(plan, stop=lambda: stopping.is_stop_requested(stop_path)):
        path = str(step.path) if step.path else save_picture(step.image, "txt2img-grid-part")
        yield GridShown(step.done, step.total, path, step.record, step.notes)


@friendly
def run_grid_view(model, prompt, negative, steps, guidance, scheduler, width, height, seed,
                  randomize, autoguidance, autoguidance_max_t, variation_seed,
                  variation_strength, x_axis, x_values, y_axis, y_values, progress=TRACK_TQDM):
    used = resolve_seed(seed, randomize)
    with stopping.running(sessions.current_session()) as stop_path:
        for out in grid_on_device(model, prompt, negative, steps, guidance, scheduler, width,
                                  height, used, autoguidance, autoguidance_max_t,
                                  variation_seed, variation_strength, x_axis, x_values,
                                  y_axis, y_values, stop_path):
            info = f"Seed used: **{used}** — {out.done}/{out.total} cells"
            if out.record is None and not out.notes:  # None, not gr.skip(): see run_generate_live
                yield out.path, info + "…", None
            else:
                yield out.path, " ".join([info + ".", *out.notes]), out.record


# ---- layout --------------------------------------------------------------------------------

def build_inside(controls: dict[str, gr.components.Component], record_json: Callable,
                 stop_generation: Callable) -> None:
    """The two views, in accordions. ``controls``: the tab's model, prompt, negative, steps,
    guidance, scheduler, width, height, seed, randomize, autoguidance, autoguidance_max_t,
    variation_seed, variation_strength components."""
    c = controls
    common = [c["model"], c["prompt"], c["negative"], c["steps"], c["guidance"], c["scheduler"],
              c["width"], c["height"], c["seed"], c["randomize"], c["autoguidance"],
              c["autoguidance_max_t"]]
    with gr.Accordion("Attention: which word drives which pixels", open=False):
        gr.Markdown("The UNet reads the prompt through cross-attention: every latent pixel "
                    "shares its attention among the prompt's tokens. Averaged over heads, "
                    "layers and steps (as DAAM does), a word's share shows where it shaped "
                    "the image. Uses the settings above, one image.")
        with gr.Row():
            word = gr.Dropdown(list(dict.fromkeys(prompt_words(EXAMPLES[0]))),
                               value=DEFAULT_WORD, allow_custom_value=True, label="Word",
                               info="a word of the prompt (several: their maps are summed)")
            show = gr.Button("Show attention", variant="primary",
                             elem_id="txt2img-attention-run")
            stop = gr.Button("Stop", variant="stop")
        with gr.Row():
            overlay = gr.Image(label="Where the word acted", type="filepath", format="png",
                               height=320, interactive=False, elem_id="txt2img-attention")
            strip = gr.Gallery(label="Every word, with its share of the attention", columns=5,
                               height=320, format="png", allow_preview=True,
                               elem_id="txt2img-attention-strip")
        info = gr.Markdown(elem_id="txt2img-attention-info")
        record = record_json(label="Reproducibility record")
    c["prompt"].change(words_of, [c["prompt"], word], word, queue=False,
                       api_visibility="undocumented")
    show.click(run_attention, [*common, word], [overlay, strip, info, record],
               **model_event("txt2img_attention", slots=COPIES))
    stop.click(stop_generation, None, info, **STOP)
    _build_grid(common, c, record_json, stop_generation)


def _build_grid(common, c, record_json, stop_generation) -> None:
    with gr.Accordion("X/Y grid: one image per pair of settings", open=False):
        with gr.Row():
            x_axis = gr.Dropdown(list(AXES), value="Guidance", label="X axis")
            x_values = gr.Textbox("1, 4, 8", label="X values", elem_id="txt2img-grid-x",
                                  info="comma-separated; seeds and steps also take ranges: 0-3")
        with gr.Row():
            y_axis = gr.Dropdown([NO_AXIS, *AXES], value="Seed", label="Y axis")
            y_values = gr.Textbox("0-2", label="Y values", elem_id="txt2img-grid-y",
                                  info="Prompt S/R: the first value is replaced by each value")
        with gr.Row():
            make = gr.Button("Make grid", variant="primary", elem_id="txt2img-grid-run")
            stop = gr.Button("Stop", variant="stop")
        image = gr.Image(label="Grid (PNG with its reproducibility record)", type="filepath",
                         format="png", interactive=False, elem_id="txt2img-grid")
        info = gr.Markdown(elem_id="txt2img-grid-info")
        record = record_json(label="Reproducibility record")
    make.click(run_grid_view, [*common, c["variation_seed"], c["variation_strength"], x_axis,
                               x_values, y_axis, y_values], [image, info, record],
               **model_event("txt2img_grid", slots=COPIES))
    stop.click(stop_generation, None, info, **STOP)
