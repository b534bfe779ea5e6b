"""The Compare tab: five families side by side on one dataset, a results table, a live refit of
all five, and one small how-it-works view per family.

Only wiring: every handler calls plain functions of playground.compare.inference / .live /
.views.
"""

from __future__ import annotations

import gradio as gr

from playground import ui
from playground.compare import FAMILIES, LABELS
from playground.core.errors import UserInputError
from playground.core.seeding import resolve_seed
from playground.core.zerogpu import as_number, gpu_handler
from playground.data.targets2d import TARGETS
from playground.data.user2d import SOURCES, user_points  # the drawing / CSV inputs

TARGET_CHOICES = [(t.label, t.name) for t in TARGETS.values()]
VIEW_CHOICES = [(LABELS[f], f) for f in FAMILIES]
DEFAULT_TARGET = "8gaussians"
TABLE_COLUMNS = ["family", "energy distance ± SE", "NLL or bound (nats)", "modes covered",
                 "train time (s)", "samples/s", "samples per mode"]
INTRO = """
**Five families, one dataset, one score.** Each panel is a model fitted to the same points for
the same number of steps: red dots are its samples (over its exact density for the flow and the
autoregressive model, over the data in grey for the others).

- **Energy distance** D² = 2E|X−Y| − E|X−X′| − E|Y−Y′| between a model's samples and held-out
  data: any sampler allows it (a GAN too), the estimate is unbiased, and it is zero only when the
  two distributions are equal. Smaller is better; ± is one standard error.
- **NLL** (nats per held-out point): *exact* for the flow and the autoregressive model; an *upper
  bound* for the VAE (−ELBO, and the tighter importance-weighted bound) and for diffusion (the
  variational bound summed over all steps); **none for the GAN** — its generator maps noise to
  points without a density to evaluate, and its discriminator scores realism, not probability.
  No model can go below the target's entropy.
- **Modes covered** (8 Gaussians, rings): a mode counts when it holds at least 20 % of the
  samples it should. The extra GAN row shrinks its noise 20×: a deliberately collapsed sampler.
"""


def _table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(rows[0]) if rows else TABLE_COLUMNS)


def _panel_values(panels: dict) -> list:
    return [panels.get(f) for f in FAMILIES]


@ui.friendly
def show_shipped(target):
    from playground.compare.inference import shipped_comparison

    comparison = shipped_comparison(target)
    status = (f"Shipped fits on **{target}** (scored on held-out points when they were made"
              + (f"; target entropy {comparison.entropy:.3f} nats" if comparison.entropy
                 else "") + ").")
    return (*_panel_values(comparison.panels), _table(comparison.table()), status,
            comparison.record)


def _score_duration(target, n_eval, seed) -> float:
    return 10 + as_number(n_eval, 2000) / 200


@ui.friendly
@gpu_handler(_score_duration)
def score(target, n_eval, seed):
    """API /compare_score: score the shipped fits again on fresh held-out points."""
    from playground.compare.inference import score_shipped

    comparison = score_shipped(target, int(as_number(n_eval, 2000)), resolve_seed(seed))
    return _table(comparison.table()), comparison.as_json()


@ui.friendly
def fit_live(source, target, sketch, csv_file, families, steps, seed, randomize):
    """API /compare_fit: refit the chosen families on the data, streaming panels, then the
    scored table."""
    from playground.compare import live

    if not families:
        raise UserInputError("Tick at least one family to train.")
    used = resolve_seed(seed, randomize)
    points = user_points(source, sketch, csv_file, used)
    cfg = live.live_config(steps, target if points is None else "custom", ",".join(families))
    run = live.start_run(cfg, points, used)
    view = live.LiveView(cfg, used, points)

    def show(frame):
        return (*frame.panels, _table(frame.table), frame.status, frame.record, run.run_id)

    yield from ui.stream_live_run(run, lambda r: show(view.progress(r)),
                                  lambda r: show(view.finished(r)),
                                  lambda r: show(view.stopped(r)))


def _initial():
    """The tab opens on the shipped 8-Gaussians comparison (files only, no model loaded)."""
    try:
        return show_shipped(DEFAULT_TARGET)
    except gr.Error:
        return [None] * len(FAMILIES) + [_table([]), "No shipped fits found.", None]


def _data_inputs():
    with gr.Row():
        source = gr.Radio(SOURCES, value="built-in target", label="Data",
                          elem_id="compare-source")
        target = gr.Dropdown(TARGET_CHOICES, value=DEFAULT_TARGET, label="Built-in target",
                             elem_id="compare-target")
        families = gr.CheckboxGroup(VIEW_CHOICES, value=list(FAMILIES), label="Families to fit",
                                    elem_id="compare-families")
        steps = gr.Number(value=400, precision=0, label="Steps (each family)",
                          elem_id="compare-steps")
        seed, randomize = ui.seed_controls()
    with gr.Accordion("Your own data: a drawing or a CSV", open=False):
        with gr.Row():
            sketch = gr.Sketchpad(label="Draw your distribution (the canvas is [-4, 4]²)",
                                  canvas_size=(400, 400), height=480, width=460,
                                  elem_id="compare-sketch", fixed_canvas=True,
                                  brush=gr.Brush(colors=["#000000"], color_mode="fixed",
                                                 default_size=8))
            csv_file = gr.File(label="...or upload a CSV of x,y (max 5 MB)",
                               file_types=[".csv"], type="filepath")
    return source, target, families, steps, seed, randomize, sketch, csv_file


def _results_section():
    initial = _initial()
    with gr.Row(elem_id="compare-panels"):
        panels = [gr.Image(initial[i], label=LABELS[f], type="filepath", interactive=False,
                           height=290, elem_id=f"compare-panel-{f}", show_label=False)
                  for i, f in enumerate(FAMILIES)]
    status = gr.Markdown(initial[len(FAMILIES) + 1], elem_id="compare-status")
    table = gr.Dataframe(initial[len(FAMILIES)], label="Results (held-out points)",
                         interactive=False, wrap=True, elem_id="compare-table")
    with gr.Accordion("Reproducibility record", open=False):
        record = gr.JSON(initial[-1], label="Record")
    return panels, status, table, record


def _score_section(target):
    gr.Markdown("Score the shipped fits again on fresh held-out points (also the "
                "`/compare_score` API route).")
    with gr.Row():
        n_eval = gr.Number(value=2000, precision=0, label="Held-out points")
        seed = gr.Number(value=0, precision=0, label="Seed")
        go = gr.Button("Score the shipped fits")
    table = gr.Dataframe(label="Scores", interactive=False, wrap=True)
    raw = gr.JSON(label="Scores and record (JSON)")
    go.click(score, [target, n_eval, seed], [table, raw], **ui.model_event("compare_score"))


def build_tab() -> None:
    gr.Markdown(INTRO)
    source, target, families, steps, seed, randomize, sketch, csv_file = _data_inputs()
    with gr.Row():
        shipped = gr.Button("Show the shipped fits", elem_id="compare-shipped")
        start = gr.Button("Refit all five live", variant="primary", elem_id="compare-start")
        stop = gr.Button("Stop", elem_id="compare-stop")
    panels, status, table, record = _results_section()
    run_id = gr.State(None)
    shown = [*panels, table, status, record]
    shipped.click(show_shipped, target, shown, **ui.model_event("compare_shipped"))
    target.change(show_shipped, target, shown, **ui.model_event(None))  # files only: instant
    start.click(fit_live, [source, target, sketch, csv_file, families, steps, seed, randomize],
                [*panels, table, status, record, run_id], **ui.train_event("compare_fit"))
    stop.click(ui.stop_live_run, run_id, status, queue=False, api_name="compare_fit_stop")
    with gr.Tabs():
        with gr.Tab("How each one works"):
            _views_section(target)
        with gr.Tab("Score again"):
            _score_section(target)


VIEW_IMAGES = 3  # the most pictures one view returns (the AR view)


@ui.friendly
@gpu_handler(20)
def show_view(family, target, x0, seed):
    """One family's how-it-works view on the shipped fits of ``target``."""
    from playground.compare import views

    if family not in LABELS:
        raise UserInputError(f"Family must be one of {', '.join(LABELS)}, got {family!r}.")
    used = resolve_seed(seed)
    view = (views.ar_view(target, as_number(x0, 0.0), used) if family == "ar"
            else views.VIEWS[family](target, used))
    frames = view.frames
    scrub = gr.update(maximum=max(0, len(frames) - 1), value=len(frames) - 1 if frames else 0,
                      visible=bool(frames))
    frame = gr.update(value=frames[-1] if frames else None, visible=bool(frames))
    images = [gr.update(value=path, visible=True) for path in view.images[:VIEW_IMAGES]]
    images += [gr.update(value=None, visible=False)] * (VIEW_IMAGES - len(images))
    return (*images, view.caption, frames, frame, scrub)


def scrub_frame(frames, index):
    """The diffusion scrubber: the reverse-trajectory frame at the slider's position."""
    if not frames:
        return None
    return frames[int(min(max(0, as_number(index, 0)), len(frames) - 1))]


def _views_section(target):
    with gr.Row():
        family = gr.Radio(VIEW_CHOICES, value="gan", label="Family", elem_id="compare-view-family")
        x0 = gr.Slider(-4, 4, value=0.0, step=0.05, label="AR: slice at x0")
        seed = gr.Number(value=0, precision=0, label="Seed")
        go = gr.Button("Show how it works", elem_id="compare-view-go")
    caption = gr.Markdown()
    with gr.Row(elem_id="compare-view-images"):
        images = [gr.Image(type="filepath", interactive=False, show_label=False,
                           visible=i == 0, elem_id=f"compare-view-{i}")
                  for i in range(VIEW_IMAGES)]
    frames = gr.State([])
    with gr.Row():
        scrub = gr.Slider(0, 10, value=10, step=1, label="Reverse diffusion: frame",
                          visible=False)
        frame = gr.Image(label="Reverse trajectory", type="filepath", interactive=False,
                         height=300, visible=False)
    outputs = [*images, caption, frames, frame, scrub]
    event = ui.model_event("compare_view")
    go.click(show_view, [family, target, x0, seed], outputs, **event)
    x0.release(show_view, [family, target, x0, seed], outputs, **ui.model_event(None))
    scrub.change(scrub_frame, [frames, scrub], frame, queue=False)
