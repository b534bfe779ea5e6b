"""Plain-value views of a generation result for the tab (no gradio here)."""

from __future__ import annotations

from playground.gpt.inference import Generation, TokenInfo, probability_label
from playground.gpt.sampling import table_rows


def highlighted(prompt: str, result: Generation) -> list[tuple[str, str | None]]:
    """(text, bin label) pairs: the prompt uncoloured, then each generated token."""
    pairs: list[tuple[str, str | None]] = [(prompt, None)]
    pairs += [(t.token, probability_label(t.p)) for t in result.tokens]
    return pairs


def info_markdown(result: Generation) -> str:
    prompt = result.prompt
    lines = [f"**Seed used:** {result.seed} · **tokens generated:** {len(result.tokens)}"]
    if prompt.perplexity is not None:
        lines.append(f"**Your prompt under this model:** perplexity {prompt.perplexity:.1f} "
                     f"per token (its {prompt.tokens} tokens after the first, each given the ones "
                     f"before), {prompt.nats_per_char:.2f} "
                     "nats/char — lower means the model finds your text more predictable.")
    if result.notes:
        lines.append("**Note:** " + "; ".join(result.notes) + ".")
    lines.append("Click a coloured token to see the ten tokens the model considered there.")
    return "\n\n".join(lines)


def alternatives(tokens: list[TokenInfo], index: int) -> tuple[list[list], str]:
    """Rows [token, p before filters, p after filters] of the top-10 at generated token
    ``index`` (0-based over generated tokens), and a caption. The rows are numbered as a
    branch's ``choice`` (``sampling.table_rows``; keyed by token id where the ids are known)."""
    if not 0 <= index < len(tokens):
        return [], "That is your prompt; click a generated (coloured) token."
    tok = tokens[index]
    before, after = _keyed(tok.top_before, tok.ids_before), _keyed(tok.top_after, tok.ids_after)
    rows = [[repr(text), None if p is None else round(p, 4), round(q, 4)]
            for (_, text), p, q in table_rows(before, after)]
    caption = (f"Token {index + 1}: {tok.token!r} had probability {tok.p:.3f} under the "
               f"model and {tok.p_sampled:.3f} after temperature/top-k/top-p/min-p/penalty. "
               "Click a row to continue the text from that token instead (same seed and "
               "settings).")
    return rows, caption


def _keyed(pairs: list[tuple[str, float]], ids: list[int]) -> list[tuple[tuple, float]]:
    """((id, text), p) pairs, so two tokens with the same text stay two rows."""
    keys = ids if len(ids) == len(pairs) else [text for text, _ in pairs]
    return [((key, text), p) for key, (text, p) in zip(keys, pairs, strict=True)]


def loss_frame(history: list[dict]):
    """A long DataFrame (step, value, series) of train and held-out loss for a LinePlot."""
    import pandas as pd

    rows = [(r["step"], r["loss"], "train loss") for r in history if "loss" in r]
    rows += [(r["step"], r["val_loss"], "held-out loss") for r in history if "val_loss" in r]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def done_text(name: str, history: list[dict]) -> str:
    """The status line of a finished live run (its last log row has the step and the time)."""
    last = history[-1] if history else {}
    return (f"Done: **{name}** ({last.get('step', 0)} steps, {last.get('time_s', 0):.0f} s). "
            "It is now in the model list above.")


def samples_text(samples: list[tuple[int, str]]) -> str:
    return "\n\n".join(f"[step {step}] {text}" for step, text in reversed(samples))
