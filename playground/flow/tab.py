"""The Flows tab: fitted density + exact log-likelihood, layer-by-layer view, live training,
and fitting an energy by reverse KL (beside a fit to samples).

Only wiring: every handler calls plain functions of playground.flow.inference / .live /
.energy_live / .energy_view.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from playground import ui
from playground.core import registry
from playground.core.errors import UserInputError
from playground.core.seeding import resolve_seed
from playground.core.zerogpu import as_number, gpu_handler
from playground.data.targets2d import TARGETS
from playground.data.user2d import SOURCES, user_points
from playground.flow import FAMILY, shipped_name
from playground.flow.energies import DEFAULT_ENERGY, ENERGIES
from playground.flow.reverse import ONE_SENTENCE
from playground.ui import stop_live_run

TARGET_CHOICES = [(t.label, t.name) for t in TARGETS.values()]
FLOW_CHOICES = [("Neural spline flow", "nsf"), ("RealNVP (affine coupling)", "realnvp"),
                ("Glow-style (ActNorm + linear + coupling)", "glow")]
HEAT_SIZE = 400
DEFAULT_TARGET = "8gaussians"
TRACK_TQDM = gr.Progress(track_tqdm=True)  # hub downloads' tqdm bars, shown in the browser
INTRO = """
**A flow is an invertible map from a Gaussian to the data**, so it gives the *exact* density of
any point: `log q(x) = log N(z) + Σ log|det J|` over its layers. Pick a target and a fitted flow;
click on the heatmap to read the exact log q there. KL(p‖q) is estimated from target samples
(± its standard error) where the target's density is known.
"""


# ZeroGPU slots (seconds, clamped to [5, 120] by gpu_handler). The flows are tiny: the time is
# mostly attaching the GPU and moving the model there (~5 s); the request's own work is a 128²
# density grid, 5,000 test points (NLL, KL) and the samples, about a second per 10,000 points
# on one CPU thread, far less on a GPU. Shorter slots queue first, so ask for no more than this.
GPU_BASE_S = 10


def density_seconds(target, flow, n_samples, seed=None, randomize=None, progress=None) -> float:
    """The density view: base + 1 s per 1,000 samples drawn (20,000 at most: 30 s)."""
    return GPU_BASE_S + as_number(n_samples, 1000) / 1000


def layers_seconds(flow, seed=None, randomize=None, progress=None) -> float:
    """The layer view: 800 points and a 26-line grid through every layer, a fixed amount."""
    return GPU_BASE_S


def click_seconds(flow, target, evt=None, progress=None) -> float:
    """One point's log-density: the shortest slot."""
    return 5


def _undecoded_file(file, cache_dir: str) -> str | None:
    """Stand-in for ImageEditor.convert_and_format_image: the uploaded file as it is (or the
    browser's blob written to gradio's cache as it is), never decoded here."""
    from gradio import processing_utils
    from gradio.data_classes import FileData

    if file is None:
        return None
    if isinstance(file, FileData):
        return file.path
    return processing_utils.save_bytes_to_cache(bytes(file), "sketch.png", cache_dir)


def checked_sketchpad(**kwargs) -> gr.Sketchpad:
    """A Sketchpad whose value reaches the handler as undecoded file paths.

    Gradio's ImageEditor decodes every layer and re-encodes it even with ``type="filepath"``
    (``convert_and_format_image``: ``Image.open(...).convert(mode)``, then a save to its cache),
    so a 20 kB PNG of 13000×13000 pixels cost 30 s and 4.6 GB before any handler ran. This
    instance passes each image on as the uploaded file; the handler opens it with
    ``core.uploads``, which checks the pixel count in the header before decoding. (Replaced on
    the instance: a subclass of a gradio component makes gradio write a .pyi beside this file.)
    """
    pad = gr.Sketchpad(type="filepath", **kwargs)
    pad.convert_and_format_image = (
        lambda file, flatten_on_white=False: _undecoded_file(file, pad.GRADIO_CACHE))
    return pad


@ui.friendly
@gpu_handler(density_seconds)
def show_density(target, flow, n_samples, seed, randomize, progress=TRACK_TQDM):
    from playground.flow.inference import density_view

    used = resolve_seed(seed, randomize)
    view = density_view(target, flow, n_samples=n_samples, seed=used)
    return view.heatmap, view.samples, view.metrics, used


@ui.friendly
@gpu_handler(click_seconds)
def click_log_prob(flow, target, evt: gr.SelectData, progress=TRACK_TQDM):
    from playground.core.plot2d import pixel_to_point
    from playground.flow.inference import log_prob_at

    if evt is None or not isinstance(evt.index, (list, tuple)):
        raise UserInputError("Click on the heatmap to pick a point.")
    col, row = evt.index[:2]
    x, y = pixel_to_point(col, row, HEAT_SIZE)
    return log_prob_at(flow, x, y, target).as_dict()


@ui.friendly
@gpu_handler(layers_seconds)
def show_layers(flow, seed, randomize, progress=TRACK_TQDM):
    import pandas as pd

    from playground.flow.inference import layers_view

    used = resolve_seed(seed, randomize)
    view = layers_view(flow, seed=used)
    return view.image, pd.DataFrame(view.table()), used


@ui.friendly
def train_live(source, target, sketch, csv_file, flow_type, depth, width, lr, steps, batch,
               seed, randomize):
    from playground.flow import live

    used = resolve_seed(seed, randomize)
    points = user_points(source, sketch, csv_file, used)
    cfg = live.live_config(flow_type, depth, width, lr, steps, batch,
                           target if points is None else "custom")
    run = live.start_run(cfg, points, used)
    view = live.LiveView(cfg, used, points)

    def show(frame):
        return (frame.heatmap, frame.samples, frame.losses, frame.status, run.run_id,
                frame.model_name)

    yield from ui.stream_live_run(run, lambda r: show(view.progress(r)),
                                  lambda r: show(view.finished(r)),
                                  lambda r: show(view.stopped(r)))


def select_trained(name):
    """After a run: list it in the Flow dropdown (and select it) in this session."""
    if not name:
        return gr.update()
    return gr.update(choices=registry.choices(FAMILY), value=name)


stop_training = stop_live_run  # shared Stop-button handler (playground.ui)


def _preview(filename: str) -> str | None:
    """A picture saved beside the default shipped flow, so the tab opens on a fitted density
    without loading a model."""
    path = registry.WEIGHTS_DIR / shipped_name(DEFAULT_TARGET) / filename
    return str(path) if path.is_file() else None


def _preview_metrics() -> dict | None:
    path = _preview("metrics.json")
    return json.loads(Path(path).read_text()) if path else None


def _density_section():
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            target = gr.Dropdown(TARGET_CHOICES, value="8gaussians", label="Target p(x)")
            flow = ui.model_dropdown(FAMILY, label="Flow",
                                     info="A shipped flow, one you trained here, or a hub id.")
            n_samples = gr.Slider(100, 5000, value=1000, step=100, label="Samples to draw")
            seed, randomize = ui.seed_controls()
            show = gr.Button("Show density", variant="primary")
        with gr.Column(scale=2):
            with gr.Row():
                heat = gr.Image(_preview("density.png"),
                                label="Density q(x) on [-4, 4]² (click: exact log q)",
                                type="filepath", interactive=False, height=HEAT_SIZE,
                                elem_id="flow-heatmap")
                samples = gr.Image(_preview("samples.png"),
                                   label="Samples x = f⁻¹(z), z ~ N(0, I)", type="filepath",
                                   interactive=False, height=HEAT_SIZE)
            with gr.Row():
                metrics = gr.JSON(_preview_metrics(), label="Likelihood (nats)")
                clicked = gr.JSON(label="Exact log-density at the clicked point")
            with gr.Row(elem_id="flow-share"):
                # a link that reopens this page with the shown density and its settings
                gr.DeepLinkButton()
    event = ui.model_event("flow_density")
    inputs = [target, flow, n_samples, seed, randomize]
    show.click(show_density, inputs, [heat, samples, metrics, seed], **event)
    heat.select(click_log_prob, [flow, target], clicked, **ui.model_event(None, "flow"))
    return flow, inputs, [heat, samples, metrics, seed]


def _layers_section(flow):
    gr.Markdown("Base noise (left) is pushed through the inverse of each layer in turn. Points "
                "keep their colour; `log|det|` is the mean log volume change of that layer.")
    with gr.Row():
        seed, randomize = ui.seed_controls()
        go = gr.Button("Show layers", variant="primary")
    image = gr.Image(label="From base to data, layer by layer", type="filepath",
                     interactive=False)
    table = gr.Dataframe(label="log-det per layer (z → x)", interactive=False)
    go.click(show_layers, [flow, seed, randomize], [image, table, seed],
             **ui.model_event("flow_layers"))


def _train_section(flow):
    with gr.Row():
        source = gr.Radio(SOURCES, value="built-in target", label="Data", elem_id="flow-source")
        target = gr.Dropdown(TARGET_CHOICES, value="8gaussians", label="Built-in target")
    with gr.Row():
        sketch = checked_sketchpad(label="Draw your distribution (the canvas is [-4, 4]²)",
                                   canvas_size=(400, 400), height=480, width=460,
                                   elem_id="flow-sketch", fixed_canvas=True,
                                   brush=gr.Brush(colors=["#000000"], color_mode="fixed",
                                                  default_size=8))
        csv_file = gr.File(label="...or upload a CSV of x,y (max 5 MB)", file_types=[".csv"],
                           type="filepath")
    with gr.Row():
        flow_type = gr.Radio(FLOW_CHOICES, value="nsf", label="Flow")
        depth = gr.Slider(1, 12, value=4, step=1, label="Depth (layers)")
        width = gr.Slider(8, 256, value=64, step=8, label="Hidden width")
    with gr.Row():
        lr = gr.Number(value=5e-3, label="Learning rate")
        steps = gr.Number(value=400, precision=0, label="Steps", elem_id="flow-steps")
        batch = gr.Number(value=256, precision=0, label="Batch size")
        seed, randomize = ui.seed_controls()
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="flow-start")
        stop = gr.Button("Stop", elem_id="flow-stop")
    status = gr.Markdown("Not started.", elem_id="flow-train-status")
    with gr.Row():
        live_heat = gr.Image(label="Density while training", interactive=False,
                             elem_id="flow-live-heatmap", height=320)
        live_samples = gr.Image(label="Samples while training", interactive=False, height=320)
        loss = gr.LinePlot(x="step", y="nll", color="series", label="NLL (nats)", height=320)
    run_id, trained = gr.State(None), gr.State(None)
    inputs = [source, target, sketch, csv_file, flow_type, depth, width, lr, steps, batch, seed,
              randomize]
    start.click(train_live, inputs, [live_heat, live_samples, loss, status, run_id, trained],
                **ui.train_event("flow_train")).success(select_trained, trained, flow)
    stop.click(stop_training, run_id, status, queue=False, api_name="flow_train_stop")


# --- Fit an energy (reverse KL), beside a fit to samples ---------------------------------
ENERGY_CHOICES = [(e.label, e.name) for e in ENERGIES.values()]
ENERGY_INTRO = f"""
**Fit an energy.** Here the flow never sees a sample: it gets only an unnormalised log-density
log p̃(x) and minimises E_q[log q(x) − log p̃(x)] = KL(q‖p) − log Z over points x = f⁻¹(z) it
draws itself. Beside it, a twin flow (same architecture, same first weights, same steps) learns
from samples of the same density by maximum likelihood, as in *Train live*.
The table reports each fit's KL(q‖p) (log Z by quadrature on a fine grid), KL(p‖q), the
effective sample size of the importance weights p̃/q (1 = perfect) and, for the mixture, how
many of its 4 modes the fit covers. (A high ESS does not prove every mode is found: the
weights are only ever computed where q puts samples.)

> {ONE_SENTENCE} Try *4 separated Gaussians*.
"""
JUDGE_BASE_S = 10  # ZeroGPU slot: attach + a 128² grid + the report's samples


def judge_seconds(energy, flow, n_samples, seed=None, randomize=None, progress=None) -> float:
    return JUDGE_BASE_S + as_number(n_samples, 4000) / 2000


@ui.friendly
def fit_energy(energy, flow_type, depth, width, lr, steps, batch, compare, seed, randomize):
    from playground.flow import energy_live

    used = resolve_seed(seed, randomize)
    cfg = energy_live.energy_config(energy, flow_type, depth, width, lr, steps, batch, compare)
    run = energy_live.start_energy_run(cfg, used)
    view = energy_live.EnergyLiveView(cfg, used)

    def show(frame):
        return (frame.energy, frame.energy_fit, frame.sample_fit, frame.losses, frame.report,
                frame.status, frame.record, run.run_id, frame.model_name)

    yield from ui.stream_live_run(run, lambda r: show(view.progress(r)),
                                  lambda r: show(view.finished(r)),
                                  lambda r: show(view.stopped(r)))


@ui.friendly
@gpu_handler(judge_seconds)
def judge_energy(energy, flow, n_samples, seed, randomize, progress=TRACK_TQDM):
    from playground.flow.energy_view import judge_flow

    used = resolve_seed(seed, randomize)
    view = judge_flow(energy, flow, n_samples=n_samples, seed=used)
    return view.energy, view.density, view.metrics, used


def _energy_controls():
    with gr.Row():
        energy = gr.Dropdown(ENERGY_CHOICES, value=DEFAULT_ENERGY, label="Energy log p̃(x)",
                             elem_id="flow-energy-name")
        flow_type = gr.Radio(FLOW_CHOICES, value="nsf", label="Flow")
        depth = gr.Slider(1, 12, value=4, step=1, label="Depth (layers)")
        width = gr.Slider(8, 256, value=64, step=8, label="Hidden width")
    with gr.Row():
        lr = gr.Number(value=5e-3, label="Learning rate")
        steps = gr.Number(value=1000, precision=0, label="Steps", elem_id="flow-energy-steps")
        batch = gr.Number(value=256, precision=0, label="Batch size")
        compare = gr.Checkbox(value=True, label="Also fit to samples (forward KL), to compare")
        seed, randomize = ui.seed_controls()
    return energy, [energy, flow_type, depth, width, lr, steps, batch, compare, seed, randomize]


def _judge_section(flow, energy):
    gr.Markdown("**Judge the flow picked above against the energy**: a shipped flow (fitted to "
                "samples), one you fitted here, or a hub id. White dots: the flow's samples.")
    with gr.Row():
        n_samples = gr.Slider(500, 20000, value=4000, step=500, label="Samples of q and of p")
        seed, randomize = ui.seed_controls()
        go = gr.Button("Judge the picked flow", elem_id="flow-energy-judge")
    with gr.Row():
        picture = gr.Image(label="Energy p̃ with the flow's samples", type="filepath",
                           interactive=False, height=360, elem_id="flow-energy-judged")
        density = gr.Image(label="The flow's density q", type="filepath", interactive=False,
                           height=360)
        metrics = gr.JSON(label="Fit report (nats)")
    go.click(judge_energy, [energy, flow, n_samples, seed, randomize],
             [picture, density, metrics, seed], **ui.model_event("flow_energy_judge"))


def _energy_section(flow: gr.Dropdown) -> None:
    """Fit an energy (reverse KL) live beside a fit to samples; judge the picked flow."""
    gr.Markdown(ENERGY_INTRO)
    energy, inputs = _energy_controls()
    with gr.Row():
        start = gr.Button("Fit", variant="primary", elem_id="flow-energy-start")
        stop = gr.Button("Stop", elem_id="flow-energy-stop")
    status = gr.Markdown("Not started.", elem_id="flow-energy-status")
    with gr.Row():
        pictures = [gr.Image(label=label, interactive=False, height=300, elem_id=elem)
                    for label, elem in (("Energy p̃(x)", "flow-energy-target"),
                                        ("Fit to the energy (reverse KL): q", "flow-energy-fit"),
                                        ("Fit to samples (forward KL): q", "flow-energy-sfit"))]
    gr.Markdown(f"*{ONE_SENTENCE}*")
    with gr.Row():
        loss = gr.LinePlot(x="step", y="kl", color="series", height=300,
                           label="Each fit's objective as a KL (nats): the energy fit's "
                                 "KL(q‖p), the sample fit's KL(p‖q) (hover for names)")
        report = gr.Dataframe(label="How each fit matches the energy (latest evaluation)",
                              interactive=False, elem_id="flow-energy-report")
    with gr.Accordion("Reproducibility record", open=False):
        record = gr.JSON(label="Record (the command line repeats the fit)")
    run_id, trained = gr.State(None), gr.State(None)
    start.click(fit_energy, inputs,
                [*pictures, loss, report, status, record, run_id, trained],
                **ui.train_event("flow_energy_fit")).success(select_trained, trained, flow)
    stop.click(ui.stop_live_run, run_id, status, queue=False, api_name="flow_energy_stop")
    _judge_section(flow, energy)


def build_tab() -> None:
    flow, inputs, outputs = _density_section()
    with gr.Tabs():
        with gr.Tab("Train live", elem_id="flow-train-tab"):
            _train_section(flow)
        with gr.Tab("Layer by layer"):
            _layers_section(flow)
        with gr.Tab("Fit an energy", elem_id="flow-energy-tab"):
            _energy_section(flow)
