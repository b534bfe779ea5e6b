"""Train a family: `python -m playground.train FAMILY [--preset NAME] [--max-steps N] [--out DIR]
[--data PATH] [--resume]`.

Every family's `tiny` preset runs with no other argument; `--out` defaults to
`runs/<family>-<preset>`; a checkpoint is written every `--checkpoint-every` steps (default
200) to `<out>-ckpt`, and `--resume` continues from it.

Also under `accelerate launch [--cpu --num_processes 2] -m playground.train ...` (DDP).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from playground import families
from playground.core.errors import UserInputError
from playground.core.training import LoopConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground.train", description=__doc__)
    parser.add_argument("family", choices=families.available())
    parser.add_argument("--preset", default=None, help="named config (family's PRESETS)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default=None, help="output folder (HF format), written "
                        "atomically; default runs/<family>-<preset>")
    parser.add_argument("--data", default=None,
                        help="training data path, where the family needs one")
    parser.add_argument("--resume", action="store_true", help="continue from <out>-ckpt")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="steps between checkpoints in <out>-ckpt (0: only at the end)")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also keep the model folder every N steps in <out>-snapshots "
                             "(for `python -m playground.core.averaging`)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--sample-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--mixed-precision", default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the preset config (repeatable)")
    return parser


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _checkpoints(out: str) -> list[Path]:
    """Checkpoint folders of a run: ``<out>-ckpt``, and ``<out>-<stage>-ckpt`` for staged runs."""
    folder = Path(out)
    found = folder.parent.glob(f"{folder.name}-*ckpt") if folder.parent.exists() else []
    return [p for p in found if (p / "progress.json").exists()]


def main(argv: list[str] | None = None, *, module=None):
    """Parse the flags and train. ``module`` (default ``playground.<family>.train``) supplies
    ``PRESETS``, ``DEFAULT_PRESET`` and ``train_cli``: research variants pass their own."""
    args = build_parser().parse_args(argv)
    module = module or importlib.import_module(f"playground.{args.family}.train")
    preset = args.preset or module.DEFAULT_PRESET
    if preset not in module.PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; choose from {sorted(module.PRESETS)}")
    out = args.out or str(Path("runs") / f"{args.family}-{preset}")
    if args.resume and not _checkpoints(out):
        raise SystemExit(f"error: --resume: there is no checkpoint for {out} (looked for "
                         f"{out}-ckpt/progress.json); run without --resume to start from step 0.")
    loop = LoopConfig(max_steps=args.max_steps or 0, out_dir=out, resume=args.resume,
                      checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                      snapshot_every=args.snapshot_every,
                      sample_every=args.sample_every, seed=args.seed, device=args.device,
                      mixed_precision=args.mixed_precision)
    try:
        result = module.train_cli(preset, loop, args.data, parse_overrides(args.set))
    except UserInputError as error:  # a bad setting: its message, not a traceback
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({"steps": result.steps, "wall_time_s": round(result.wall_time_s, 1),
                      "final": result.last, "out": str(result.out_dir)}, default=str))
    return result


if __name__ == "__main__":
    import sys

    from playground.core.distributed import relaunch_cpu_workers

    rc = relaunch_cpu_workers("playground.train", sys.argv[1:])
    if rc is not None:
        raise SystemExit(rc)
    main()
