"""Fit a 2-D flow by maximum likelihood on the shared training loop.

`python -m playground.train flow --preset ship --set target=8gaussians
--out weights/flow-8gaussians`

Built-in targets give fresh samples every step (infinite data); a drawn/uploaded point cloud is
split 80/20 into train and test points. Adam with a linear warm-up and a cosine decay of the
learning rate (computed from the step, so a resumed run continues the same schedule), gradient
clipping, and test NLL (plus KL(p‖q) for analytic targets) logged as it trains.

With ``energy`` set (presets ``energy``, ``energy-tiny``) the flow is fitted to an unnormalised
density instead, by reverse KL, with no samples at all (``energy_train``):
`python -m playground.train flow --preset energy --set energy=banana`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.core.config import resolve_preset
from playground.core.errors import UserInputError
from playground.core.schedules import warmup_cosine
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask, train_loop
from playground.data.targets2d import TARGETS, get_target
from playground.flow.energies import get_energy
from playground.flow.energy_train import build_energy_task
from playground.flow.metrics import density_grid, log_prob_batched
from playground.flow.model import FLOW_TYPES, FlowModel, init_actnorm

ENERGY_STEPS = 500
TEST_SEED = 777  # the held-out points of a built-in target do not depend on the run's seed


@dataclass
class FlowConfig:
    target: str = "8gaussians"  # a built-in target; ignored when points are given
    flow_type: str = "nsf"  # realnvp | glow | nsf
    depth: int = 4  # number of flow steps
    width: int = 64  # hidden units of each layer's 2-layer MLP
    bins: int = 8  # spline bins (nsf)
    batch_size: int = 256
    steps: int = 1000
    lr: float = 5e-3
    warmup: int = 50  # steps of linear warm-up
    final_lr_frac: float = 0.02  # cosine decay ends at lr * final_lr_frac
    grad_clip: float = 5.0
    n_test: int = 2000
    sample_points: int = 600  # samples drawn for the live view
    sample_grid: int = 96  # resolution of the live heatmap
    energy: str = ""  # an energy of flow.energies: fit it by reverse KL instead of a target
    compare_samples: bool = False  # energy fits: also fit a twin flow to samples (forward KL)


PRESETS: dict[str, FlowConfig] = {
    "tiny": FlowConfig(depth=2, width=16, batch_size=64, steps=20, n_test=256, warmup=2),
    "live": FlowConfig(steps=400),  # in-browser default: KL ≈ 0.07 on 8 Gaussians in ~10-30 s
    "ship": FlowConfig(depth=6, width=96, batch_size=512, steps=4000, lr=3e-3, warmup=200,
                       n_test=4000),  # the shipped weights/flow-<target> (5-15 min each)
    "ship-cuda": FlowConfig(depth=8, width=128, batch_size=4096, steps=20000, lr=1e-3,
                            warmup=500, n_test=20000),
    # reverse KL to an energy (no data); "energy" is also the in-browser default
    "energy-tiny": FlowConfig(energy="gaussian", depth=2, width=16, batch_size=64, steps=20,
                              n_test=256, warmup=2),
    "energy": FlowConfig(energy="mixture", compare_samples=True, steps=ENERGY_STEPS,
                         n_test=2000),
}
DEFAULT_PRESET = "ship"


def resolve_config(preset: str, overrides: dict | None = None) -> FlowConfig:
    """``PRESETS[preset]`` with ``--set`` overrides, then the flow's own value checks."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="flow")
    if cfg.flow_type not in FLOW_TYPES:
        raise UserInputError(f"Unknown flow type {cfg.flow_type!r}; choose from {FLOW_TYPES}.")
    if cfg.energy:
        get_energy(cfg.energy)  # an unknown name is refused with the list of energies
    return cfg


def learning_rate(step: int, total: int, cfg: FlowConfig) -> float:
    """Linear warm-up for ``cfg.warmup`` steps, then cosine decay to ``lr * final_lr_frac``
    (computed from the step, so a resumed run continues the same schedule)."""
    return cfg.lr * warmup_cosine(step, total, cfg.warmup, cfg.final_lr_frac)


def split_points(points: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle (N, 2) points and split 80/20 into train and test (test keeps at least 1)."""
    order = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, len(points) // 5)
    return points[order[n_test:]], points[order[:n_test]]


def split_data(cfg: FlowConfig, points: torch.Tensor | None, seed: int):
    """(train points or None for fresh target samples, (M, 2) test points, the target's exact
    log p of the test points or None where it has no closed form / the points are the user's)."""
    if points is not None:
        return *split_points(points.float(), seed), None
    target = get_target(cfg.target)
    test_pts = target.sample(cfg.n_test, torch.Generator().manual_seed(TEST_SEED))
    return None, test_pts, target.log_prob(test_pts) if target.log_prob else None


def batches(cfg: FlowConfig, seed: int, train_points: torch.Tensor | None):
    """Endless (batch_size, 2) batches: fresh target samples, or resampled user points."""
    gen = torch.Generator().manual_seed(seed)
    target = None if train_points is not None else get_target(cfg.target)
    while True:
        if target is not None:
            yield target.sample(cfg.batch_size, gen)
        else:
            yield train_points[torch.randint(len(train_points), (cfg.batch_size,), generator=gen)]


def build_model(cfg: FlowConfig, seed: int, init_batch: torch.Tensor) -> FlowModel:
    torch.manual_seed(seed)
    model = FlowModel(cfg.flow_type, cfg.depth, cfg.width, cfg.bins,
                      target=cfg.target if cfg.target in TARGETS else "custom")
    init_actnorm(model, init_batch)
    return model


def build_task(cfg: FlowConfig, loop: LoopConfig, points: torch.Tensor | None = None,
               init: FlowModel | None = None) -> TrainTask:
    """The TrainTask for one flow (by maximum likelihood; by reverse KL when ``cfg.energy``).

    Args:
        points: (N, 2) user points (drawn or uploaded); None = the built-in ``cfg.target``.
        init: a flow to continue training; a new one otherwise.
    """
    if cfg.energy:
        if points is not None:
            raise UserInputError("A fit to an energy uses no data points: leave out --data, "
                                 "or unset energy to fit the points.")
        return build_energy_task(cfg, loop, init)
    train_pts, test_pts, test_logp = split_data(cfg, points, loop.seed)
    rank = int(os.environ.get("RANK", "0"))  # DDP workers each draw their own batches
    data = batches(cfg, loop.seed + 1 + 1000 * rank, train_pts)
    first = next(data)
    model = init if init is not None else build_model(cfg, loop.seed, first)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total = loop.max_steps or cfg.steps

    def step(ctx: StepContext, x: torch.Tensor) -> dict[str, float]:
        acc, optimizer = ctx.accelerator, ctx.optimizers["flow"]
        lr = learning_rate(ctx.step, total, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = -ctx.models["flow"](x.to(acc.device)).mean()
        optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(ctx.models["flow"].parameters(), cfg.grad_clip)
        optimizer.step()
        return {"train_nll": loss.item(), "lr": lr}

    def evaluate(models, step: int) -> dict[str, float]:
        logq = log_prob_batched(models["flow"], test_pts)
        row = {"test_nll": -logq.mean().item()}
        if test_logp is not None:
            row["kl"] = (test_logp - logq).mean().item()
        return row

    def sample(models, step_no: int) -> dict:
        flow = models["flow"]
        logq, _ = density_grid(flow, cfg.sample_grid)
        pts = flow.sample(cfg.sample_points, torch.Generator().manual_seed(0)).cpu()
        return {"logq": logq.numpy(), "samples": pts.numpy()}

    def save(models, folder: Path) -> None:
        models["flow"].save_pretrained(folder)

    summary = {"flow_config": dataclasses.asdict(cfg),
               "data": "user points" if points is not None else f"target {cfg.target}",
               "n_points": None if points is None else len(points)}
    return TrainTask(models={"flow": model}, optimizers={"flow": opt},
                     batches=_prepend(first, data), step=step, save=save, sample=sample,
                     evaluate=evaluate, summary=summary)


def _prepend(first, rest):
    yield first
    yield from rest


def train_points_cli(resolve, build, preset: str, loop: LoopConfig, data: str | None,
                     overrides: dict) -> TrainResult:
    """The CLI of a 2-D family (flow, compare): ``resolve(preset, overrides)`` -> config,
    ``--data`` an optional CSV of x,y points, ``build(cfg, loop, points)`` -> the TrainTask."""
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    cfg = resolve(preset, overrides)
    if loop.max_steps == 0:
        loop.max_steps = cfg.steps
    points = None
    if data:
        from playground.data.user2d import points_from_csv
        points = points_from_csv(data)
    return train_loop(loop, build(cfg, loop, points))


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """`python -m playground.train flow ...`; ``--data`` is an optional CSV of x,y points."""
    return train_points_cli(resolve_config, build_task, preset, loop, data, overrides)
