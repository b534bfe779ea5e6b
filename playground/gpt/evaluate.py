"""Held-out nats per character of a causal LM: `python -m playground.gpt.evaluate --model DIR
--data austen.txt [--split held-out|all] [--max-chars N]`.

nats/char = (sum of token negative log-likelihoods, in nats) / (number of characters). Unlike
per-token loss it does not depend on the tokenizer, so models with different vocabularies
compare fairly. The text is scored with a sliding window: every token is predicted from at
least ``stride`` earlier tokens (except at the very start, which is conditioned on
<|endoftext|>).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
