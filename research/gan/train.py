"""GAN ablations on the 400 Olivetti photos: the product trainer plus switches that did not ship.

`python -m research.gan.train --preset abl-a --max-steps 2000 --out /work/runs/gan-abl-a
--checkpoint-every 250` takes the flags of `python -m playground.train gan`; every product
preset is here too. Results: LOG.md.

The switches (fields of ``ResearchConfig`` on top of the product's ``GANConfig``). Three change
the models (``research/gan/model.py``) and so the training:
- ``d_batch_norm=False``: a plain D without normalisation ((b): it stayed at chance here);
- ``identity_weight`` > 0: D gets an identity head (cross-entropy on the real photos' person
  labels) and G's loss adds identity_weight·``identity_loss`` of that head on fakes: each face
  should be one clear person, the batch should cover them all ((e));
- ``upsample="resize"``: G's doublings are nearest-neighbour upsampling + a 3x3 conv ((f)).
The others only measure, and do not change the training trajectory (no shared random state):
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
import torch.nn.functional as F

from playground.core.config import resolve_preset
from playground.core.ema import update_ema
from playground.core.errors import UserInputError, check_range
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask, train_loop
from playground.gan import train as T
from playground.gan.augment import faces_to_tensor
from research.configs import with_switches
from research.gan.model import (
    UPSAMPLES,
    ResearchDiscriminator,
    ResearchGenerator,
    identity_loss,
)
from research.gan.watch import FACE_ID, KEYS


@dataclass
class ResearchConfig(T.GANConfig):
    d_batch_norm: bool = True  # False: the plain D
    identity_weight: float = 0.0  # > 0: D's identity head and G's identity term
    upsample: str = "transposed"  # or "resize": G's resize-convolution doublings
    extra_ema: tuple[float, ...] = ()
    extra_ema_start: int = 200
    eval_every: int = 0
    eval_n: int = 200


def _research(cfg: T.GANConfig, **switches) -> ResearchConfig:
    return with_switches(ResearchConfig, cfg, **switches)


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
    """The product's checks, on a research preset, and those of the switches."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="GAN research")
    T.resolve_config("olivetti", {f.name: getattr(cfg, f.name)
                                  for f in dataclasses.fields(T.GANConfig)})
    check_range("identity_weight", cfg.identity_weight, 0, 1e3)
    if cfg.upsample not in UPSAMPLES:
        raise UserInputError(f"upsample must be one of {UPSAMPLES}, got {cfg.upsample!r}.")
    if isinstance(cfg.extra_ema, list):  # --set extra_ema=[0.99] arrives as a list
        cfg = dataclasses.replace(cfg, extra_ema=tuple(cfg.extra_ema))
    return cfg


def build_models(cfg: ResearchConfig, n_classes: int = 0
                 ) -> tuple[ResearchGenerator, ResearchDiscriminator]:
    """The product's ``build_models`` with the model switches (and ``n_classes`` people)."""
    g = ResearchGenerator(nz=cfg.nz, ngf=cfg.ngf, nc=1, image_size=cfg.image_size,
                          upsample=cfg.upsample)
    d = ResearchDiscriminator(ndf=cfg.ndf, nc=1, image_size=cfg.image_size,
                              spectral_norm=cfg.spectral_norm,
                              batch_norm=cfg.d_batch_norm and not cfg.spectral_norm,
                              n_classes=n_classes)
    return g, d


def labelled_batches(data: torch.Tensor, labels: torch.Tensor, cfg: ResearchConfig, seed: int):
    """The product's ``real_batches`` (same order and augmentation) paired with the person of
    each face: (images (B, 1, S, S), labels (B,))."""
    for idx, images in T.indexed_real_batches(data, cfg, seed):
        yield images, labels[idx]


def identity_step(cfg: ResearchConfig):
    """The product's ``gan_step`` on (images, labels) batches, with D's identity head: its
    cross-entropy on the reals joins D's loss, ``identity_weight``·``identity_loss`` on the
    fakes joins G's."""
    def step(ctx: StepContext, batch) -> dict[str, float]:
        real, labels = batch

        def judge_real(d, images):
            logits, classes = d(images, classes=True)
            accuracy = (classes.argmax(1).cpu() == labels).float().mean().item()
            return (logits, F.cross_entropy(classes, labels.to(ctx.accelerator.device)),
                    {"id_acc": accuracy})

        def judge_fake(d, images):
            logits, classes = d(images, classes=True)
            loss = identity_loss(classes)
            return logits, cfg.identity_weight * loss, {"id_g": loss.item()}
        return T.gan_step(cfg, ctx, real, judge_real=judge_real, judge_fake=judge_fake)
    return step


def build_task(cfg: ResearchConfig, loop: LoopConfig, data: torch.Tensor,
               labels: torch.Tensor | None = None) -> TrainTask:
    """The product's ``build_task`` on the research models; with ``identity_weight`` > 0 and
    ``labels`` (N,) (the person of each face), the identity head and its terms."""
    torch.manual_seed(loop.seed)
    n_classes = int(labels.max()) + 1 if cfg.identity_weight > 0 and labels is not None else 0
    task = T.build_task(cfg, loop, data, init=build_models(cfg, n_classes))
    if n_classes:
        task.batches = labelled_batches(data, labels, cfg, loop.seed + 1)
        task.step = identity_step(cfg)
    task.summary["identity_term"] = bool(n_classes)
    return task


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
    faces = T.read_faces(data)
    images = faces_to_tensor(faces.images, cfg.image_size)
    loop = dataclasses.replace(loop, max_steps=loop.max_steps or cfg.steps)
    task = build_task(cfg, loop, images, labels=torch.from_numpy(faces.persons).long())
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
