"""Write the model card (README.md) of a trained GPT folder from its training summary and
``eval.json``: `python -m playground.gpt.card --model weights/gpt-austen --command "..."`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

PREVIOUS = "previous_model.json"  # the replaced model's figures, shown beside this one's
SAMPLE_PROMPTS = ("It is a truth universally acknowledged, that",
                  "Mr. Knightley looked at Emma and said,")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _samples(folder: Path) -> list[str]:
    from playground.core import registry
    from playground.gpt import inference

    entry = registry.ModelEntry(folder.name, "gpt", path=folder)  # not added to the registry
    out = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        result = inference.generate(entry, prompt, max_new_tokens=90, temperature=0.8,
                                    top_p=0.95, seed=i)
        quote = "> " + (prompt + result.text).strip().replace("\n", "\n> ")
        out.append(f"**Prompt:** {prompt!r} (seed {i}, temperature 0.8, top-p 0.95)\n\n{quote}")
    return out


def _stored_dtype(folder: Path) -> str:
    """"fp32" or "fp16": the dtype of the first tensor of the folder's first shard."""
    from safetensors import safe_open

    shard = sorted(folder.glob("*.safetensors"))[0]
    with safe_open(str(shard), "pt") as handle:
        dtype = handle.get_tensor(next(iter(handle.keys()))).dtype
    return {"torch.float32": "fp32", "torch.float16": "fp16"}.get(str(dtype), str(dtype))


def _previous(folder: Path, now: dict[str, str]) -> str:
    """The model this one replaced, figure by figure beside ``now`` (this model's), from
    ``previous_model.json`` in the folder (written from the old card when a new model ships);
    "" when there is none."""
    path = folder / PREVIOUS
    if not path.exists():
        return ""
    old = json.loads(path.read_text())
    was = {"shape": old["shape"], "training text": old["text"],
           "steps / tokens seen": f"{old['steps']:,} / {old['tokens_seen']:,}",
           "wall time": f"{old['wall_time_min']:.1f} min",
           "nats/char, whole held-out novel": f"{old['nats_per_char_whole_text_ids']:.4f} "
           f"({old['nats_per_char_paragraph_piece_ids']:.4f} on the paragraph-piece ids it was "
           f"trained on)",
           "token perplexity (own tokenizer)": f"{old['token_perplexity_whole_text_ids']:.2f}",
           "stray line breaks, 20 samples of 200 tokens":
               str(old["stray_line_breaks_in_20_samples"])}
    body = "\n".join(f"| {name} | {value} | {now.get(name, '—')} |" for name, value in was.items())
    return (f"\n## The previous model\nThis model replaced {old['what']} "
            f"({old['parameters'] / 1e6:.2f} M parameters). A stray line break is one that is "
            f"not a paragraph or dialogue break (the tab's default settings).\n\n"
            f"| | previous | this model |\n|---|---|---|\n{body}\n")


def write_card(folder: Path, data: str, commands: list[str], extra_wall_s: float = 0.0,
               notes: str = "", device: str = "1 CPU thread", stray: int | None = None) -> str:
    summary = json.loads((folder / "training_summary.json").read_text())
    ev = json.loads((folder / "eval.json").read_text())
    cfg = summary["gpt_config"]
    full = ev["full"]
    steps = summary["steps"]
    tokens_seen = steps * summary["tokens_per_step"]
    wall = summary["wall_time_s"] + extra_wall_s
    slice_key = next(k for k in ev if k.startswith("first_"))
    commands_md = "\n".join(commands)
    reflowed = (" Both were **reflowed** (`data.reflow`): the printed line wraps removed, one "
                "blank line between paragraphs and speeches." if cfg.get("reflow") else "")
    npc, slice_npc = full["nats_per_char"], ev[slice_key]["nats_per_char"]
    slice_chars = slice_key.split("_")[1]
    optim = (f"AdamW (β 0.9/0.95, weight decay {cfg['weight_decay']}), peak LR {cfg['lr']}, "
             f"{cfg['warmup_steps']} warm-up steps, cosine to {cfg['min_lr_ratio']}×")
    card = f"""---
license: mit
library_name: transformers
pipeline_tag: text-generation
tags: [gpt2, byte-level-bpe, jane-austen, playground]
---
# gpt-austen

A small GPT-2 ({summary['parameters'] / 1e6:.2f} M parameters: {cfg['n_layer']} layers, width
{cfg['n_embd']}, {cfg['n_head']} heads, context {cfg['block_size']} tokens, tied embeddings) with a
byte-level BPE tokenizer of {cfg['vocab_size']} tokens, both trained from scratch by this
repository's trainer (`playground/gpt/train.py` on the shared accelerate loop). Weights are
stored in {_stored_dtype(folder)}, sharded so that every file is under 10 MB; load with
`AutoModelForCausalLM.from_pretrained("weights/gpt-austen")`.

## Data
`austen.txt` (sha256 `{_sha256(data)[:16]}…`): five Jane Austen novels (public domain, from the
janeaustenr package). **Training:** Emma, Mansfield Park, Pride and Prejudice, Sense and
Sensibility ({summary['train_chars']:,} characters, {summary['train_tokens']:,} tokens).
**Held out, never trained on:** {summary['held_out']} ({summary['val_chars']:,} characters). The
tokenizer was trained on the training split only.{reflowed}

## Results on the held-out novel
| metric | value |
|---|---|
| **nats per character** (whole novel, window stride {ev['stride']}) | **{npc:.4f}** |
| bits per character | {full['bits_per_char']:.4f} |
| token perplexity | {full['token_perplexity']:.2f} |
| character perplexity (e^nats/char) | {math.exp(full['nats_per_char']):.3f} |
| nats/char, first {slice_chars} characters (recomputed by the tests) | {slice_npc:.4f} |

nats/char = (sum of the tokens' negative log-likelihoods) / (number of characters), so it does
not depend on the tokenizer. Reproduce with
`python -m playground.gpt.evaluate --model weights/gpt-austen --data austen.txt`.

## Training
| | |
|---|---|
| steps | {steps:,} (batch {cfg['batch_size']} × {cfg['block_size']} tokens) |
| tokens seen | {tokens_seen:,} (≈ {tokens_seen / summary['train_tokens']:.1f} epochs) |
| wall time | {wall / 60:.1f} min |
| device | {device} |
| optimiser | {optim} |
| regularisation | dropout {cfg['dropout']} (residual/embedding), gradient clip {cfg['grad_clip']} |
| final logged train loss | {summary['final_metrics'].get('loss', float('nan')):.3f} nats/token |

{notes}

Exact commands (from the repository root):

```
{commands_md}
```

{_previous(folder, {
        "shape": f"{cfg['n_layer']} layers, width {cfg['n_embd']}, {cfg['n_head']} heads, "
                 f"context {cfg['block_size']}, vocabulary {cfg['vocab_size']}",
        "training text": "reflowed into paragraphs" if cfg.get("reflow") else "the printed text",
        "steps / tokens seen": f"{steps:,} / {tokens_seen:,}", "wall time": f"{wall / 60:.1f} min",
        "nats/char, whole held-out novel": f"{npc:.4f}",
        "token perplexity (own tokenizer)": f"{full['token_perplexity']:.2f}",
        "stray line breaks, 20 samples of 200 tokens": "—" if stray is None else str(stray)})}
## Samples
{chr(10).join(chr(10) + s + chr(10) for s in _samples(folder))}
## Limitations
{summary['parameters'] / 1e6:.1f} M parameters trained for {wall / 3600:.1f} hours on one CPU
thread: the prose has the period's vocabulary, punctuation and rhythm, but sentences wander and
the plot does not hold together. It knows only these four novels' English.
"""
    (folder / "README.md").write_text(card)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.gpt.card")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--command", action="append", default=[], help="repeatable, in order")
    parser.add_argument("--extra-wall-s", type=float, default=0.0,
                        help="wall time of earlier segments of a resumed run")
    parser.add_argument("--notes", default="")
    parser.add_argument("--device", default="1 CPU thread", help="what it trained on, in words")
    parser.add_argument("--stray-line-breaks", type=int, default=None,
                        help="line breaks that are not a paragraph break in 20 default samples")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(write_card(Path(args.model), args.data, args.command, args.extra_wall_s, args.notes,
                     args.device, args.stray_line_breaks))


if __name__ == "__main__":
    main()
