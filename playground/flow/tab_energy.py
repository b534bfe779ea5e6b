"""The Flows tab's "Fit an energy" view: a flow fitted to an unnormalised density by reverse KL,
live, beside a twin flow fitted to samples of it (forward KL); and any flow of the picker judged
against an energy. Only wiring: the work is in flow.energy_live / flow.energy_view.
"""

from __future__ import annotations

import gradio as gr

from playground import ui
from playground.core.seeding import resolve_seed
from playground.core.zerogpu import as_number, gpu_handler
from playground.flow.energies import DEFAULT_ENERGY, ENERGIES
from playground.flow.reverse import ONE_SENTENCE

ENERGY_CHOICES = [(e.label, e.name) for e in ENERGIES.values()]
FLOW_CHOICES = [("Neural spline flow", "nsf"), ("RealNVP (affine coupling)", "realnvp"),
                ("Glow-style (ActNorm + linear + coupling)", "glow")]
INTRO = f"""
**Fit an energy.** Here the flow never sees a sample: it gets only an unnormalised log-density
log p̃(x) and minimises E_q[log q(x) − log p̃(x)] = KL(q‖p) − log Z over points x = f⁻¹(z) it
draws itself. Beside it, a twin flow (same architecture, same first weights, same steps) learns
from samples of the same density by maximum likelihood, as in *Train live*.
The table reports each fit's KL(q‖p) (log Z by quadrature on a fine grid), KL(p‖q), the
effective sample size of the importance weights p̃/q (1 = perfect) and, for the mixture, how
many of its 4 modes the fit covers.

> {ONE_SENTENCE} Try *4 separated Gaussians*.
"""
TRACK_TQDM = gr.Progress(track_tqdm=True)  # hub downloads' tqdm bars, shown in the browser
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


def _fit_controls():
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


def energy_section(flow: gr.Dropdown, select_trained) -> None:
    """The view; ``flow`` is the tab's model picker, ``select_trained(name)`` its update once a
    fit has been saved."""
    gr.Markdown(INTRO)
    energy, inputs = _fit_controls()
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
        loss = gr.LinePlot(x="step", y="kl", color="series", label="Each fit's objective, as a "
                           "KL (nats)", height=300)
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
