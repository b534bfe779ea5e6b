"""The GPT tab's views of one token (wiring only; the work is in branch.py and inside.py):
continue from an alternative, and the attention and logit lens of any token.

Each view reads the generation's details JSON (model, prompt, settings, seed, token ids), so
its API route takes that JSON and a position, as the tab does after a click.
"""

from __future__ import annotations

import gradio as gr

from playground.core import zerogpu
from playground.gpt import DEFAULT_MAX_NEW_TOKENS
from playground.ui import friendly, model_event

INSIDE_COLORS = {"prompt": "#b0bec5", "generated": "#90caf9"}
INSIDE_S = 20.0  # one forward pass over at most the context, plus the picture
CONTINUE_BASE_S, CONTINUE_S_PER_TOKEN = 10.0, 0.06  # as tab.generate_seconds


def stream_outputs(stream, prompt: str, seed: int):
    """The tab's outputs while a generation streams (text; the old tokens cleared at once),
    then the coloured tokens, the info, the details JSON and the tokens' state."""
    from playground.gpt import views

    result, first = None, True
    for result in stream:
        if not result.done:
            cleared = [] if first else gr.skip()  # drop the previous run's tokens at once
            yield result.text, cleared, f"Generating… (seed {seed})", gr.skip(), cleared
            first = False
    yield (result.text, views.highlighted(prompt, result), views.info_markdown(result),
           result.details(), result.tokens)


def continue_seconds(details, *_, **__) -> float:
    """GPU seconds of a branch: the original's max new tokens (the prefix is replayed)."""
    params = (details or {}).get("record", {}).get("params", {}) if isinstance(details,
                                                                               dict) else {}
    return CONTINUE_BASE_S + CONTINUE_S_PER_TOKEN * zerogpu.as_number(
        params.get("max_new_tokens"), DEFAULT_MAX_NEW_TOKENS)


@friendly
@zerogpu.gpu_handler(continue_seconds)
def continue_text(details, position, choice):
    """Rerun the generation in ``details`` with generated token ``position`` (1-based) swapped
    for row ``choice`` (1-based) of its top-10 table; same seed and settings."""
    from playground.gpt import branch
    from playground.gpt.details import read_details

    source = read_details(details)
    yield from stream_outputs(branch.stream_continue(details, position, choice),
                              source.settings["prompt"], source.seed)


@friendly
@zerogpu.gpu_handler(INSIDE_S)
def show_attention(details, position):
    """Attention of every layer and head from token ``position`` (0-based over prompt and
    generated tokens): the picture, a caption, and the weights with the record (JSON)."""
    from playground.gpt import inside

    view = inside.attention_view(details, position)
    return view.image, view.note, view.details()


@friendly
@zerogpu.gpu_handler(INSIDE_S)
def show_logit_lens(details, position):
    """Each layer's top-5 next tokens at token ``position``: the table, a caption, the JSON."""
    import pandas as pd

    from playground.gpt import inside

    lens = inside.logit_lens(details, position)
    headers, rows = lens.table()
    return pd.DataFrame(rows, columns=headers), lens.note, lens.details()


@friendly
def context_tokens(details):
    """The prompt's and the generated tokens as clickable (text, part) pairs; no model runs."""
    if not isinstance(details, dict) or not details.get("tokens"):
        return []
    pairs = [(text or "∅", "prompt") for text in details.get("prompt_tokens", [])]
    return pairs + [(t.get("token") or "∅", "generated") for t in details["tokens"]]


def picked(evt: gr.SelectData) -> int:
    """The index of a clicked token (0-based)."""
    return int(evt.index or 0)


def picked_row(evt: gr.SelectData) -> int:
    """The row of a clicked table cell, 1-based (a branch's ``choice``)."""
    index = evt.index
    return int(index[0] if isinstance(index, (list, tuple)) else index or 0) + 1


def wire_continue(tokens_view, table, details, outputs):
    """A click on a row of the top-10 table continues the text from that alternative; returns
    that event (the Stop button cancels it)."""
    position = gr.Number(visible=False, label="Branch at generated token (1-based)")
    choice = gr.Number(visible=False, label="Alternative (row of the top-10 table, 1-based)")
    tokens_view.select(picked, None, position, queue=False, api_visibility="private")
    row = table.select(picked_row, None, choice, queue=False, api_visibility="private")
    return row.then(continue_text, [details, position, choice], outputs,
                    **model_event("gpt_continue"))


def build_inside(details) -> None:
    """The "Inside the model" section: a token strip; a click shows attention and logit lens."""
    with gr.Accordion("Inside the model: attention and logit lens", open=True):
        gr.Markdown("Click any token, of your prompt or of the generation: the attention of "
                    "every layer and head from it to the tokens before it, and the logit lens "
                    "(what each layer, read through the model's final norm and unembedding, "
                    "would predict next).")
        strip = gr.HighlightedText(label="Tokens the model read (click one)",
                                   color_map=INSIDE_COLORS, show_legend=True,
                                   combine_adjacent=False, elem_id="gpt-inside-tokens")
        position = gr.Number(visible=False, label="Token position (0-based)")
        attention_note = gr.Markdown()
        attention = gr.Image(label="Attention: rows = layers, columns = heads", type="filepath",
                             interactive=False, elem_id="gpt-attention")
        lens_note = gr.Markdown()
        lens = gr.Dataframe(label="Logit lens: each layer's top-5 next tokens", interactive=False,
                            headers=["layer", "#1", "#2", "#3", "#4", "#5", "next"],
                            elem_id="gpt-lens")
        with gr.Accordion("Weights, lens and records (JSON)", open=False):
            attention_json = gr.JSON(label="Attention")
            lens_json = gr.JSON(label="Logit lens")
    details.change(context_tokens, details, strip, queue=False, api_visibility="private")
    click = strip.select(picked, None, position, queue=False, api_visibility="private")
    click.then(show_attention, [details, position], [attention, attention_note, attention_json],
               **model_event("gpt_attention"))
    click.then(show_logit_lens, [details, position], [lens, lens_note, lens_json],
               **model_event("gpt_logit_lens"))
