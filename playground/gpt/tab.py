"""The "Text (GPT)" tab: wiring only; the work is in inference.py, live.py and views.py
(imported inside the handlers, so building the app does not import transformers). The views of
one token (continue from an alternative, attention, logit lens) are wired in ``tab_inside.py``."""

from __future__ import annotations

import gradio as gr

from playground.core import registry, zerogpu
from playground.core.seeding import resolve_seed
from playground.gpt import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SAMPLING, FAMILY
from playground.gpt.tab_inside import build_inside, stream_outputs, wire_continue
from playground.ui import (
    friendly,
    model_dropdown,
    model_event,
    seed_controls,
    stop_live_run,
    stream_live_run,
    train_event,
)

DEFAULT_PROMPT = "It is a truth universally acknowledged, that"
PROB_COLORS = {"p ≥ 0.5": "#4caf50", "0.1 – 0.5": "#cddc39", "0.01 – 0.1": "#ff9800",
               "< 0.01": "#f44336"}
TRACK_TQDM = gr.Progress(track_tqdm=True)  # huggingface_hub's download bars, in the browser
# ZeroGPU slot of one generation: a fixed part (the worker's first CUDA call, the prompt's
# perplexity, decoding the odds) plus a per-token part. A GPU token costs about 10-30 ms for
# these models (gpt-austen: 6 layers; SmolLM2-135M: 30), plus our sampler's step on the CPU;
# 60 ms leaves room, so 1000 tokens ask for 70 s and the default 120 for 17 s.
GENERATE_BASE_S = 10.0
GENERATE_S_PER_TOKEN = 0.06


def generate_seconds(model, prompt, use_chat, max_new_tokens, *_, **__) -> float:
    """Seconds of GPU that ``generate_text`` asks ZeroGPU for, from its own arguments."""
    tokens = zerogpu.as_number(max_new_tokens, DEFAULT_MAX_NEW_TOKENS)
    return GENERATE_BASE_S + GENERATE_S_PER_TOKEN * tokens


@friendly
@zerogpu.gpu_handler(generate_seconds)
def generate_text(model, prompt, use_chat, max_new_tokens, temperature, top_k, top_p,
                  repetition_penalty, stop, seed, randomize, min_p=0.0,
                  progress=TRACK_TQDM):
    """Stream the continuation; finally the coloured tokens, the details JSON and the notes.

    ``progress`` shows huggingface_hub's download bars when ``model`` is a hub id."""
    from playground.gpt import inference

    seed = resolve_seed(seed, randomize)
    yield from stream_outputs(
        inference.stream_generate(model, prompt, max_new_tokens, temperature, top_k, top_p,
                                  repetition_penalty, stop, seed, use_chat, min_p=min_p),
        prompt, seed)


@friendly
def show_alternatives(tokens, evt: gr.SelectData):
    """The top-10 at the clicked token, read from the odds ``generate_text`` recorded: no
    model runs here, so no GPU slot is asked for (on ZeroGPU a slot costs the user quota)."""
    from playground.gpt import views

    rows, caption = views.alternatives(tokens or [], (evt.index or 0) - 1)  # 0 is the prompt
    return rows, caption


@friendly
def train_on_upload(file, mode, steps, seed, randomize):
    """Start a LiveRun and stream its loss curve and samples; offer the result when done.

    The upload is text, read and checked by ``live.read_upload`` (size, binary, encoding)."""
    from playground.gpt import live, views

    text = live.read_upload(file)
    seed = resolve_seed(seed, randomize)
    run, name = live.start_training(text, mode, steps, seed)
    status = f"Training **{name}** on {len(text):,} characters (seed {seed})…"
    yield views.loss_frame([]), "", status, run.run_id, gr.skip()

    def progress(r):
        note = r.waiting_note()  # while queued behind other users' runs: what we wait for
        shown = f"{note} **{name}** starts when its turn comes." if note else status
        return (views.loss_frame(r.history), views.samples_text(r.samples), shown, r.run_id,
                gr.skip())

    def finished(r):
        return (views.loss_frame(r.history), views.samples_text(r.samples),
                views.done_text(name, r.history), None,
                gr.update(choices=registry.choices(FAMILY), value=name))

    def stopped(r):
        return gr.skip(), gr.skip(), "Training stopped; nothing was saved.", None, gr.skip()

    yield from stream_live_run(run, progress, finished, stopped)


stop_training = stop_live_run  # shared Stop-button handler (playground.ui)


def _generate_controls():
    with gr.Row():
        model = model_dropdown(FAMILY)
        use_chat = gr.Checkbox(value=True, label="Use the chat template (instruct models)")
    prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", lines=3)
    with gr.Accordion("Sampling", open=True):
        with gr.Row():
            max_new = gr.Slider(1, 1000, value=DEFAULT_MAX_NEW_TOKENS, step=1,
                                label="Max new tokens")
            temperature = gr.Slider(0, 2, value=DEFAULT_SAMPLING["temperature"], step=0.05,
                                    label="Temperature",
                                    info="0 = greedy (always the most likely token)")
            top_k = gr.Number(value=DEFAULT_SAMPLING["top_k"], precision=0, minimum=0,
                              label="Top-k (0 = off)")
        with gr.Row():
            top_p = gr.Slider(0.01, 1, value=DEFAULT_SAMPLING["top_p"], step=0.01,
                              label="Top-p (1 = off)")
            min_p = gr.Slider(0, 1, value=0.0, step=0.01, label="Min-p (0 = off)",
                              info="keeps tokens with p ≥ min-p × p of the likeliest")
        with gr.Row():
            repetition = gr.Slider(1, 3, value=1.0, step=0.05, label="Repetition penalty")
            stop = gr.Textbox(value="", label="Stop text (\\n for a newline)", max_lines=1)
        seed, randomize = seed_controls()
    return [model, prompt, use_chat, max_new, temperature, top_k, top_p, repetition, stop,
            seed, randomize, min_p]


def _train_section(model_dropdown_component) -> None:
    from playground.gpt.live import MAX_STEPS, MODES  # cheap: no transformers at import

    with gr.Accordion("Train on your own text", open=False):
        gr.Markdown("Upload a plain-text file (up to 5 MB). A tiny GPT learns it in a few "
                    "minutes on a CPU; watch the loss fall and the samples improve. The "
                    "finished model appears in the model list above. Generation waits while "
                    "a training run uses the CPU.")
        with gr.Row():
            upload = gr.File(label="Text file (.txt)", file_types=[".txt"], type="filepath",
                             elem_id="gpt-upload")
            with gr.Column():
                mode = gr.Radio([(v, k) for k, v in MODES.items()], value="new", label="Mode")
                steps = gr.Slider(10, MAX_STEPS, value=300, step=10, label="Training steps",
                                  elem_id="gpt-train-steps")
                train_seed, train_randomize = seed_controls()
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop training", variant="stop")
        status = gr.Markdown(elem_id="gpt-train-status")
        plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss (nats per token)")
        samples = gr.Textbox(label="Samples during training (newest first)", lines=6)
        run_id = gr.State(None)
    train_btn.click(train_on_upload, [upload, mode, steps, train_seed, train_randomize],
                    [plot, samples, status, run_id, model_dropdown_component],
                    **train_event("gpt_train"))
    stop_btn.click(stop_training, run_id, status, queue=False, api_name="gpt_train_stop")


def build_tab() -> None:
    gr.Markdown("A GPT continues your text one token at a time. Each token is drawn from a "
                "probability distribution that the sampling settings reshape; the colours "
                "show how likely each drawn token was.")
    inputs = _generate_controls()
    with gr.Row():
        go = gr.Button("Generate", variant="primary")
        halt = gr.Button("Stop")
        gr.DeepLinkButton()  # a link that reopens this page with the result and its settings
    output = gr.Textbox(label="Generated text", lines=6)
    info = gr.Markdown()
    tokens_view = gr.HighlightedText(label="Tokens by probability (click one)",
                                     color_map=PROB_COLORS, show_legend=True,
                                     combine_adjacent=False)
    caption = gr.Markdown()
    table = gr.Dataframe(headers=["token", "p model", "p after filters"],
                         label="Top-10 here (click a row to continue the text from it)",
                         interactive=False)
    with gr.Accordion("Per-token probabilities (JSON, with the reproducibility record)",
                      open=False):
        details = gr.JSON()
    tokens_state = gr.State([])
    outputs = [output, tokens_view, info, details, tokens_state]
    event = go.click(generate_text, inputs, outputs, **model_event("gpt_generate"))
    tokens_view.select(show_alternatives, tokens_state, [table, caption], queue=False)
    branch = wire_continue(tokens_view, table, details, outputs)
    halt.click(None, cancels=[event, branch], queue=False)
    build_inside(details)
    _train_section(inputs[0])
