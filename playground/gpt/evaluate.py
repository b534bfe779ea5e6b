"""Held-out nats per character of a causal LM: `python -m playground.gpt.evaluate --model DIR
--data austen.txt [--split held-out|all] [--max-chars N]`.

nats/char = (sum of token negative log-likelihoods, in nats) / (number of characters). Unlike
per-token loss it does not depend on the tokenizer, so models with different vocabularies
compare fairly. The text is scored with a sliding window: every token is predicted from at
least ``stride`` earlier tokens (except at the very start, which is conditioned on
<|endoftext|>).

A prompt is scored the same way from the logits of the forward pass that starts its generation
(``PrefillScorer``): the tab shows its perplexity beside the continuation.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

SLICE_CHARS = 20_000  # the shipped-weights test recomputes this slice


@dataclass
class TextScore:
    """How well a model predicts a text (the model card's numbers; eval.json holds these keys)."""

    nats_per_char: float
    bits_per_char: float
    token_perplexity: float
    tokens: int  # scored tokens
    chars: int


@dataclass
class PromptScore:
    """How predictable the prompt itself is under the model (None when it is one token)."""

    perplexity: float | None  # per token
    nats_per_char: float | None
    tokens: int  # scored tokens


def score_prompt(tokenizer, ids: torch.Tensor, logits: torch.Tensor) -> PromptScore:
    """The score of ``ids`` (shape (T,)) from ``logits`` (T - 1, V) predicting ``ids[1:]``.

    The first token is given, not scored (the ``model(ids, labels=ids)`` recipe): the tokens
    after it are scored, and nats/char counts the characters they spell."""
    if ids.shape[0] < 2:
        return PromptScore(None, None, 0)
    return _score(tokenizer, ids, _mean_nll(ids, logits))


def _mean_nll(ids: torch.Tensor, logits: torch.Tensor) -> float:
    target = ids[1:].to(logits.device)
    return float(torch.nn.functional.cross_entropy(logits.float(), target))


def _score(tokenizer, ids: torch.Tensor, loss: float) -> PromptScore:
    n = ids.shape[0] - 1
    chars = len(tokenizer.decode(ids[1:].tolist(), skip_special_tokens=True))
    return PromptScore(math.exp(loss), loss * n / max(1, chars), n)


class PrefillScorer:
    """A forward hook on the output embedding that scores the prompt from the logits of
    ``generate``'s own first forward pass (run with ``logits_to_keep=0``: every position's
    logits), so scoring costs one unembedding of the prompt and no forward pass of its own.
    It keeps one number, not the (T, V) logits, and reads only calls made in the thread that
    runs this request's ``generate``; ``score`` puts the figures together afterwards."""

    def __init__(self, tokenizer, ids: torch.Tensor) -> None:
        self.tokenizer, self.ids, self.thread = tokenizer, ids, threading.get_ident()
        self.loss: float | None = None

    def __call__(self, module, inputs, output) -> None:
        if self.loss is None and threading.get_ident() == self.thread \
                and output.dim() == 3 and output.shape[1] == self.ids.shape[1]:
            with torch.no_grad():
                self.loss = _mean_nll(self.ids[0], output[0, :-1])

    @property
    def score(self) -> PromptScore | None:
        return None if self.loss is None else _score(self.tokenizer, self.ids[0], self.loss)


def prefill_scoring(model, tokenizer, ids: torch.Tensor) -> PrefillScorer | None:
    """A ``PrefillScorer`` for this thread's next ``generate`` on ``ids``, or None where the
    model gives no output embedding or cannot be asked for every position's logits."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    return PrefillScorer(tokenizer, ids) if head is not None and keeps else None


def nats_per_char(model, tokenizer, text: str, stride: int | None = None,
                  batch_size: int = 8) -> TextScore:
    """Score ``text``: nats/char, bits/char, token perplexity and the counts.

    The ids are exactly ``tokenizer(text)["input_ids"]`` (``data.encode``), the ids training
    used, so the standard recipe (tokenize the whole text, slide a window) gives this score.
    """
    from playground.gpt.data import encode

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return score_ids(model, encode(tokenizer, text), len(text), bos, stride, batch_size)


@torch.no_grad()
def score_ids(model, text_ids: torch.Tensor, chars: int, bos: int, stride: int | None = None,
              batch_size: int = 8) -> TextScore:
    """The sliding-window score of the token ids ``text_ids`` (N,) of a ``chars``-long text."""
    block = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    block = min(block, 1024)
    stride = stride or block // 2
    ids = torch.cat([torch.tensor([bos]), text_ids])  # (N+1,)
    n_targets = len(ids) - 1
    # window w covers ids[start : start+block+1] and scores the targets not scored before
    starts = list(range(0, max(1, n_targets - block + stride), stride))
    total, scored = 0.0, 0
    model.eval()
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        windows = [ids[s:s + block + 1] for s in chunk]
        width = max(len(w) for w in windows)
        inputs = torch.full((len(windows), width - 1), bos, dtype=torch.long)
        targets = torch.full((len(windows), width - 1), -100, dtype=torch.long)
        for row, (s, w) in enumerate(zip(chunk, windows, strict=True)):
            inputs[row, :len(w) - 1] = w[:-1]
            first_new = 0 if s == 0 else block - stride  # earlier targets were scored already
            targets[row, first_new:len(w) - 1] = w[1:][first_new:]
        logits = model(input_ids=inputs).logits.float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets,
                                                ignore_index=-100, reduction="sum")
        total += nll.item()
        scored += int((targets != -100).sum())
    npc = total / max(1, chars)
    return TextScore(npc, npc / math.log(2), math.exp(total / max(1, scored)), scored, chars)


def wants_reflow(model, reflow: str = "auto") -> bool:
    """Whether to score ``data.reflow``-ed text: ``reflow`` is "yes", or "auto" and the model's
    config says ``reflowed_text`` (it was trained on paragraphs without printed wraps)."""
    return reflow == "yes" or (reflow == "auto" and
                               bool(getattr(model.config, "reflowed_text", False)))


def load_local(folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(folder)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m playground.gpt.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a save_pretrained folder")
    parser.add_argument("--data", required=True, help="UTF-8 text (e.g. austen.txt)")
    parser.add_argument("--split", default="held-out", choices=["held-out", "all"],
                        help="held-out: the novel/tail the trainer never trains on")
    parser.add_argument("--max-chars", type=int, default=0, help="score only the first N chars")
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reflow", default="auto", choices=["auto", "yes", "no"],
                        help="reflow the text into paragraphs first (auto: when the model's "
                             "config.json says reflowed_text, as training did)")
    parser.add_argument("--write", action="store_true",
                        help=f"also score the first {SLICE_CHARS:,} held-out characters and write "
                             "both results to <model>/eval.json (the model card's numbers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from playground.gpt.data import make_split, read_text, reflow

    text = read_text(args.data)
    split = make_split(text)
    model, tokenizer = load_local(args.model)
    reflowed = wants_reflow(model, args.reflow)
    held_out = reflow(split.val) if reflowed else split.val
    target = held_out if args.split == "held-out" else (reflow(text) if reflowed else text)
    if args.max_chars:
        target = target[:args.max_chars]
    t0 = time.perf_counter()
    result = dataclasses.asdict(nats_per_char(model, tokenizer, target, stride=args.stride))
    result.update(held_out=split.val_name if args.split == "held-out" else "none",
                  reflowed=reflowed,
                  seconds=round(time.perf_counter() - t0, 1))
    if args.write:
        sliced = nats_per_char(model, tokenizer, held_out[:SLICE_CHARS], stride=args.stride)
        result = {"full": result, f"first_{SLICE_CHARS}_chars": dataclasses.asdict(sliced),
                  "data": Path(args.data).name, "stride": args.stride or "context/2"}
        (Path(args.model) / "eval.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
