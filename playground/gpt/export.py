"""Export a training checkpoint as a model folder (for a run stopped before its last step):
`python -m playground.gpt.export --ckpt weights/gpt-austen-ckpt --preset austen --out DIR`.

The checkpoint holds accelerate's state (weights, optimizer, RNG) and ``progress.json``; the
tokenizer sits beside it (``train.tokenizer_dir``, written by the trainer before step 1). The
work is ``train.export_from_checkpoint`` (on ``core.training.export_checkpoint``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from playground.gpt.train import export_from_checkpoint, resolve_config


def export(ckpt: str | Path, preset: str, out: str | Path, overrides: dict | None = None) -> int:
    """Write ``out`` from ``ckpt`` with the shapes of ``preset``; returns the checkpoint's step."""
    cfg = resolve_config(preset, overrides)
    return export_from_checkpoint(cfg, ckpt, out, {"preset": preset})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.gpt.export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--preset", default="austen")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    step = export(args.ckpt, args.preset, args.out)
    print(json.dumps({"step": step, "out": args.out}))


if __name__ == "__main__":
    main()
