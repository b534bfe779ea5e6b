"""GAN ablations on the 400 Olivetti photos: the product trainer plus measuring switches.

`python -m research.gan.train --preset abl-a --max-steps 2000 --out /work/runs/gan-abl-a
--checkpoint-every 250` takes the flags of `python -m playground.train gan`; every product
preset is here too. Results: LOG.md.

The switches (fields of ``ResearchConfig`` on top of the product's ``GANConfig``), none of
which changes the training trajectory (they use no shared random state):
- ``extra_ema``: more EMA copies of G with these fixed decays (from ``extra_ema_start``), so
  one run compares EMA settings;
- ``eval_every`` / ``eval_n``: every N steps, the metrics of ``playground.gan.evaluate``
  (face-feature FD, precision/recall, memorisation) for the raw G and every EMA (batch-norm
  statistics re-estimated), in the run's metrics.csv and ``<out>-evals/evals.jsonl``, with a
  grid of 16 samples per generator.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.core.config import resolve_preset
from playground.core.ema import update_ema
from playground.core.training import LoopConfig, TrainResult, train_loop
from playground.gan import train as T
from research.gan.watch import FACE_ID, KEYS


@dataclass
class ResearchConfig(T.GANConfig):
    extra_ema: tuple[float, ...] = ()
    extra_ema_start: int = 200
    eval_every: int = 0
    eval_n: int = 200


def _research(cfg: T.GANConfig, **switches) -> ResearchConfig:
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(T.GANConfig)}
    return ResearchConfig(**{**base, **switches})


_MEASURE = {"extra_ema": (0.995, 0.999), "eval_every": 250,
            "ema_rampup": 0.05, "ema_start": 0}

PRESETS: dict[str, ResearchConfig] = {
    **{name: _research(cfg) for name, cfg in T.PRESETS.items()},
    # (a) the recipe shipped before issue 27 (BN D, label smoothing 0.9), EMAs measured
    "abl-a": _research(T.PRESETS["olivetti-v1"], **_MEASURE),
    # (b) a plain D (no batch norm), R1 on reals (gamma 1, lazy every 16), no label smoothing
    "abl-b": _research(T.PRESETS["olivetti-v1"], d_batch_norm=False, r1_gamma=1.0,
                       real_label=1.0, **_MEASURE),
}
DEFAULT_PRESET = "abl-a"


def resolve_config(preset: str, overrides: dict | None = None) -> ResearchConfig:
    """The product's checks, on a research preset."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="GAN research")
    T.resolve_config("olivetti", {f.name: getattr(cfg, f.name)
                                  for f in dataclasses.fields(T.GANConfig)})
    if isinstance(cfg.extra_ema, list):  # --set extra_ema=[0.99] arrives as a list
        cfg = dataclasses.replace(cfg, extra_ema=tuple(cfg.extra_ema))
    return cfg


def ema_name(decay: float) -> str:
    return f"g_ema{str(decay).split('.')[-1]}"  # 0.995 -> g_ema995


def _with_extra_emas(cfg: ResearchConfig, task) -> None:
    """Add the ``extra_ema`` copies of G to ``task`` and update them after every step."""
    product_step = task.step
    for decay in cfg.extra_ema:
        task.models[ema_name(decay)] = (
            copy.deepcopy(task.models["g"]).requires_grad_(False))

    def step(ctx, real):
        logs = product_step(ctx, real)
        g = ctx.accelerator.unwrap_model(ctx.models["g"])
        for decay in cfg.extra_ema:
            update_ema(ctx.accelerator.unwrap_model(ctx.models[ema_name(decay)]), g,
                       decay if ctx.step > cfg.extra_ema_start else 0.0, copy_buffers=True)
        return logs
    task.step = step


def _evaluator(cfg: ResearchConfig, out_dir: Path):
    """``TrainTask.evaluate``: every ``eval_every`` steps, the metrics of each generator."""
    from playground.data.faces import faces_source, load_faces
    from playground.gan.evaluate import evaluate_generator
    from playground.gan.faceid import FaceIdNet
    from playground.gan.inference import generate, grid_image, latent

    face_id = FaceIdNet.from_pretrained(str(FACE_ID)).eval()
    faces = load_faces(faces_source())
    out_dir.mkdir(parents=True, exist_ok=True)

    def evaluate(models, step: int) -> dict[str, float]:
        if not cfg.eval_every or step % cfg.eval_every:
            return {}
        t0, row = time.perf_counter(), {}
        for name in ("g", "g_ema", *(ema_name(d) for d in cfg.extra_ema)):
            g = (copy.deepcopy(models[name]).eval() if name == "g"
                 else T.recalibrate_batch_norm(models[name]))
            got = evaluate_generator(g, face_id, faces.images, faces.persons, n=cfg.eval_n)
            row.update({f"{name}/{k}": float(got[k]) for k in KEYS})
            z = torch.stack([latent(s, g.nz) for s in range(16)])
            grid_image(generate(g, z), 8).save(out_dir / f"step{step:06d}-{name}.png")
        with open(out_dir / "evals.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, "eval_s": round(time.perf_counter() - t0, 1),
                                     **row}) + "\n")
        return row
    return evaluate


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """Like ``playground.gan.train.train_cli``, with the research switches."""
    cfg = resolve_config(preset, overrides)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, persons = T.load_training_set(data, cfg.image_size)
    loop = dataclasses.replace(loop, max_steps=loop.max_steps or cfg.steps)
    task = T.build_task(cfg, loop, images, labels=persons)
    _with_extra_emas(cfg, task)
    if cfg.eval_every:
        task.evaluate = _evaluator(cfg, Path(f"{loop.out_dir}-evals"))
    task.summary["research_config"] = dataclasses.asdict(cfg)
    return train_loop(loop, task)


def main(argv: list[str] | None = None) -> TrainResult:
    """The flags of `python -m playground.train gan`, with the research presets."""
    import sys

    from playground.train import main as train_main

    return train_main(["gan", *(sys.argv[1:] if argv is None else argv)],
                      module=sys.modules[__name__])


if __name__ == "__main__":
    main()
