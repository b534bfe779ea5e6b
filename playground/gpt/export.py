"""Export a training checkpoint as a model folder (for a run stopped before its last step):
`python -m playground.gpt.export --ckpt weights/gpt-austen-ckpt --preset austen --out DIR`.

The checkpoint holds accelerate's state (weights, optimizer, RNG) and ``progress.json``; the
tokenizer sits beside it (``train.tokenizer_dir``) (written by the trainer before step 1).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from playground.core.atomic import atomic_save_dir


def export_checkpoint(ckpt: str | Path, preset: str, out: str | Path,
                      overrides: dict | None = None) -> dict:
    """Write ``out`` (fp16 safetensors shards <= 9 MB + tokenizer); returns the progress."""
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    from playground.gpt.model import build_model
    from playground.gpt.train import resolve_config, tokenizer_dir

    ckpt = Path(ckpt)
    cfg = resolve_config(preset, overrides)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir(ckpt))
    model = build_model(cfg, tokenizer)
    state = load_file(ckpt / "state" / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"checkpoint does not match preset {preset}: missing {missing}, "
                           f"unexpected {unexpected}")
    model.tie_weights()
    progress = json.loads((ckpt / "progress.json").read_text())

    def write(folder: Path) -> None:
        copy.deepcopy(model).half().save_pretrained(folder, max_shard_size="9MB")
        tokenizer.save_pretrained(folder)
        (folder / "training_progress.json").write_text(json.dumps(
            {"exported_from": str(ckpt), "preset": preset, **progress}, indent=1))
        metrics = ckpt / "metrics.csv"
        if metrics.exists():
            (folder / "metrics.csv").write_text(metrics.read_text())

    atomic_save_dir(out, write)
    return progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.gpt.export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--preset", default="austen")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(export_checkpoint(args.ckpt, args.preset, args.out)))


if __name__ == "__main__":
    main()
