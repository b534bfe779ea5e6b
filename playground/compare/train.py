"""Fit the five families to one 2-D dataset on the shared loop, interleaved: every step, each
family takes one optimisation step on the same batch, so all get the same data and the same
number of steps (and each one's own training time is measured).

`python -m playground.train compare --preset ship --set target=8gaussians
--out weights/compare-8gaussians` writes one HF-format folder per family
(``<out>/<family>/``: config.json + model.safetensors + training_summary.json).

Built-in targets give fresh samples every step; a drawn/uploaded point cloud is split 80/20 into
train and held-out points (the Flows tab's split).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.compare import FAMILIES, LABELS  # noqa: F401  (LABELS: re-exported)
from playground.compare.diffusion import DiffusionMLP, diffusion_loss, make_scheduler
from playground.compare.model import (
    ARModel,
    GANModel,
    VAEModel,
    data_standardization,
    discriminator_loss,
    generator_loss,
    vae_elbo,
)
from playground.core.config import resolve_preset
from playground.core.errors import UserInputError
from playground.core.schedules import warmup_cosine
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask
from playground.data.targets2d import TARGETS, get_target
from playground.flow.model import FlowModel

# the Flows tab's data stream (it reads only cfg.target and cfg.batch_size): fresh target
# samples every step, or the user's points resampled; both belong in a core data module
from playground.flow.train import TEST_SEED, batches, split_points

STANDARDIZE_SEED = 99  # the points that fix each model's shift/scale on a built-in target


@dataclass
class CompareConfig:
    target: str = "8gaussians"  # a built-in target; ignored when points are given
    families: str = ",".join(FAMILIES)  # comma-separated subset of FAMILIES
    steps: int = 2000  # the same for every family
    batch_size: int = 256  # one batch per step, shared by every family
    width: int = 128  # hidden units of the GAN / VAE / diffusion / AR MLPs
    gan_latent: int = 4
    vae_latent: int = 2
    flow_depth: int = 4  # zuko NSF transforms
    flow_width: int = 64
    flow_bins: int = 8
    timesteps: int = 100  # DDPM's T
    beta_schedule: str = "linear"  # β from 1e-4 to beta_end: ᾱ_T = e^-5 at T = 100, β_end = 0.1
    beta_end: float = 0.1  # (research/compare/README.md: sharper and a 1-nat tighter bound
                           # than diffusers' squared cosine at T = 100)
    diffusion_input_scale: float = 25.0  # sinusoidal features of x up to this frequency (0: off)
    ar_components: int = 16  # mixture components of p(x) and p(y | x)
    lr: float = 3e-3  # VAE, flow, diffusion, AR: Adam with warm-up + cosine
    gan_lr: float = 1e-3  # GAN: Adam(0.5, 0.9), constant
    vae_kl_warmup: float = 0.2  # fraction of the steps over which the VAE's KL weight goes 0 -> 1
    warmup: int = 50
    final_lr_frac: float = 0.05
    grad_clip: float = 5.0
    n_test: int = 1000  # held-out points for the losses logged while training
    sample_points: int = 500  # samples drawn for the live panels
    sample_grid: int = 64  # resolution of the live density heatmaps (flow, AR)

    def family_list(self) -> list[str]:
        return [f.strip() for f in self.families.split(",") if f.strip()]


PRESETS: dict[str, CompareConfig] = {
    "tiny": CompareConfig(steps=30, batch_size=64, width=16, flow_depth=1, flow_width=8,
                          timesteps=10, ar_components=4, warmup=3, n_test=128,
                          sample_points=64, sample_grid=16),
    "live": CompareConfig(steps=400, flow_depth=2, flow_width=32, width=64),  # < 60 s, 2 cores
    "ship": CompareConfig(steps=2500, warmup=100),  # weights/compare-<target>: ~4 min each
    "ship-cuda": CompareConfig(steps=20000, batch_size=4096, width=256, flow_depth=6,
                               flow_width=128, timesteps=200, lr=1e-3, warmup=500),
}
DEFAULT_PRESET = "ship"


def resolve_config(preset: str, overrides: dict | None = None) -> CompareConfig:
    """``PRESETS[preset]`` with ``--set`` overrides, then the family list is checked."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="compare")
    chosen = cfg.family_list()
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown or not chosen:
        raise UserInputError(f"Unknown families {unknown}; choose from {', '.join(FAMILIES)}.")
    return cfg


def build_model(family: str, cfg: CompareConfig, shift, scale: float, target: str):
    """A fresh model of ``family`` (initialised from the global seed set by the caller)."""
    if family == "gan":
        return GANModel(cfg.gan_latent, cfg.width, shift, scale, target)
    if family == "vae":
        return VAEModel(cfg.vae_latent, cfg.width, shift, scale, target)
    if family == "flow":
        return FlowModel("nsf", cfg.flow_depth, cfg.flow_width, cfg.flow_bins, target=target)
    if family == "diffusion":
        return DiffusionMLP(cfg.width, 32, cfg.timesteps, cfg.beta_schedule, tuple(shift),
                            scale, target, 1e-4, cfg.beta_end, cfg.diffusion_input_scale)
    if family == "ar":
        return ARModel(cfg.ar_components, cfg.width, shift, scale, target)
    raise UserInputError(f"Unknown family {family!r}; choose from {', '.join(FAMILIES)}.")


def optimizers_for(family: str, model, cfg: CompareConfig) -> dict:
    if family == "gan":
        return {"gan_d": torch.optim.Adam(model.discriminator.parameters(), cfg.gan_lr,
                                          betas=(0.5, 0.9)),
                "gan_g": torch.optim.Adam(model.generator.parameters(), cfg.gan_lr,
                                          betas=(0.5, 0.9))}
    return {family: torch.optim.Adam(model.parameters(), lr=cfg.lr)}


def _update(acc, optimizer, loss, params, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(params, clip)
    optimizer.step()


def family_step(family: str, ctx: StepContext, x: torch.Tensor, cfg: CompareConfig,
                lr: float) -> dict[str, float]:
    """One optimisation step of ``family`` on the (B, 2) batch ``x``; returns its losses."""
    acc = ctx.accelerator
    model = acc.unwrap_model(ctx.models[family])
    x = x.to(acc.device)
    if family == "gan":
        u = model.to_u(x)
        z = torch.randn(len(x), model.latent_dim, generator=ctx.generator).to(acc.device)
        fake = model.generator(z)
        d_loss = discriminator_loss(model, u, fake)
        _update(acc, ctx.optimizers["gan_d"], d_loss, model.discriminator.parameters(),
                cfg.grad_clip)
        g_loss = generator_loss(model, fake)
        _update(acc, ctx.optimizers["gan_g"], g_loss, model.generator.parameters(),
                cfg.grad_clip)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
    optimizer = ctx.optimizers[family]
    for group in optimizer.param_groups:
        group["lr"] = lr
    if family == "vae":
        kl_weight = min(1.0, ctx.step / max(1.0, cfg.vae_kl_warmup * cfg.steps))
        loss = -vae_elbo(model, x, kl_weight=kl_weight).mean()
    elif family == "diffusion":
        loss = diffusion_loss(model, make_scheduler(model), model.to_u(x), ctx.generator)
    else:  # flow, ar: exact maximum likelihood
        loss = -model(x).mean()
    _update(acc, optimizer, loss, model.parameters(), cfg.grad_clip)
    return {"loss": loss.item()}


def split_data(cfg: CompareConfig, points: torch.Tensor | None, seed: int):
    """(train points or None for fresh target samples, (M, 2) held-out points)."""
    if points is not None:
        return split_points(points.float(), seed)
    return None, get_target(cfg.target).sample(cfg.n_test, torch.Generator().manual_seed(TEST_SEED))


def build_models(cfg: CompareConfig, seed: int, train_points: torch.Tensor | None) -> dict:
    """{family: fresh model}; each family's weights depend only on the seed and its name."""
    ref = (train_points if train_points is not None else
           get_target(cfg.target).sample(4096, torch.Generator().manual_seed(STANDARDIZE_SEED)))
    shift, scale = data_standardization(ref)
    target = cfg.target if train_points is None and cfg.target in TARGETS else "custom"
    models = {}
    for index, family in enumerate(FAMILIES):
        if family in cfg.family_list():
            torch.manual_seed(seed * 100 + index)
            models[family] = build_model(family, cfg, shift, scale, target)
    return models


def held_out_losses(family: str, model, test: torch.Tensor, cfg: CompareConfig) -> dict:
    """Cheap held-out figures logged while training (the full scores are in ``metrics``)."""
    gen = torch.Generator().manual_seed(TEST_SEED)
    x = test.to(next(model.parameters()).device)
    if family in ("flow", "ar"):
        return {"test_nll": -model(x).mean().item()}
    if family == "vae":
        eps = torch.randn(len(x), model.latent_dim, generator=gen).to(x.device)
        return {"test_neg_elbo": -vae_elbo(model, x, eps).mean().item()}
    if family == "diffusion":
        return {"test_loss": diffusion_loss(model, make_scheduler(model), model.to_u(x),
                                            gen).item()}
    return {}


def build_task(cfg: CompareConfig, loop: LoopConfig, points: torch.Tensor | None = None
               ) -> TrainTask:
    """The TrainTask fitting ``cfg.families`` to one dataset, interleaved on the same batches.

    Args:
        points: (N, 2) user points (drawn or uploaded); None = the built-in ``cfg.target``.

    Logged keys are ``<family>/<loss>`` (training) and ``<family>/test_*`` (held-out), plus
    ``<family>/train_s``: the seconds that family's own steps took so far.
    """
    from playground.compare.sampling import density_grid, draw

    train_pts, test_pts = split_data(cfg, points, loop.seed)
    rank = int(os.environ.get("RANK", "0"))
    models = build_models(cfg, loop.seed, train_pts)
    optimizers = {k: v for fam, m in models.items() for k, v in optimizers_for(fam, m, cfg).items()}
    total = loop.max_steps or cfg.steps
    spent = dict.fromkeys(models, 0.0)

    def step(ctx: StepContext, x: torch.Tensor) -> dict[str, float]:
        lr = cfg.lr * warmup_cosine(ctx.step, total, cfg.warmup, cfg.final_lr_frac)
        row = {}
        for family in models:
            t0 = time.perf_counter()
            losses = family_step(family, ctx, x, cfg, lr)
            spent[family] += time.perf_counter() - t0
            row.update({f"{family}/{k}": v for k, v in losses.items()})
        return row

    def evaluate(trained, step_no: int) -> dict[str, float]:
        row = {}
        for family, model in trained.items():
            figures = held_out_losses(family, model, test_pts, cfg)
            row.update({f"{family}/{k}": v for k, v in figures.items()})
            row[f"{family}/train_s"] = round(spent[family], 3)
        return row

    def sample(trained, step_no: int) -> dict:
        out = {}
        for family, model in trained.items():
            pts = draw(family, model, cfg.sample_points, torch.Generator().manual_seed(0),
                       fast=True)
            grid = density_grid(family, model, cfg.sample_grid)
            out[family] = {"samples": pts.numpy(),
                           "logq": None if grid is None else grid.numpy()}
        return out

    def save(trained, folder: Path) -> None:
        for family, model in trained.items():
            model.save_pretrained(folder / family)
            info = {"family": family, "train_s": round(spent[family], 2)}
            (folder / family / "family_summary.json").write_text(json.dumps(info))
        if points is not None:  # the user's data, so the held-out scores can be recomputed
            torch.save({"train": train_pts, "test": test_pts}, folder / "points.pt")

    summary = {"compare_config": dataclasses.asdict(cfg), "families": list(models),
               "data": "user points" if points is not None else f"target {cfg.target}",
               "n_points": None if points is None else len(points)}
    return TrainTask(models=models, optimizers=optimizers,
                     batches=batches(cfg, loop.seed + 1 + 1000 * rank, train_pts), step=step,
                     save=save, sample=sample, evaluate=evaluate, summary=summary)


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """`python -m playground.train compare ...`; ``--data`` is an optional CSV of x,y points."""
    from playground.flow.train import train_points_cli

    return train_points_cli(resolve_config, build_task, preset, loop, data, overrides)
