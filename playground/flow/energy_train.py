"""Fit a 2-D flow to an energy by reverse KL on the shared training loop.

`python -m playground.train flow --preset energy --set energy=banana --out runs/flow-banana`

Each step draws base noise z ~ N(0, I), pushes it through the flow (x = f⁻¹(z), log q(x)) and
lowers E_q[log q − log p̃] (``reverse.reverse_kl_loss``). With ``compare_samples`` a second
flow of the same architecture and the same initial weights is fitted beside it to samples of
the same energy by maximum likelihood (forward KL), on the same schedule, so the two fits can
be compared; only the energy fit is saved. Both are judged against the energy by
``reverse.fit_report`` as they train.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from playground.core.schedules import warmup_cosine
from playground.core.training import LoopConfig, StepContext, TrainTask
from playground.flow.energies import get_energy, quadrature
from playground.flow.metrics import density_grid
from playground.flow.model import FlowModel, init_actnorm
from playground.flow.reverse import fit_report, reverse_kl_loss

EVAL_SEED = 4243  # the samples that judge a fit do not depend on the run's seed
EVALUATIONS = 10  # fit reports per run (and one at the last step)
FITS = {"flow": "energy_fit", "samples_fit": "sample_fit"}  # model name -> metric prefix


def energy_batches(batch_size: int, seed: int, quad=None):
    """Endless (z, x_p): base noise (B, 2) for the energy fit, and (B, 2) samples of p for
    the fit to samples (None without one), from one generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        z = torch.randn(batch_size, 2, generator=gen)
        yield z, (quad.sample(batch_size, gen) if quad is not None else None)


def new_flow(cfg, seed: int, init_batch: torch.Tensor) -> FlowModel:
    """A fresh flow (weights from ``seed``); Glow's ActNorm initialised on ``init_batch``."""
    torch.manual_seed(seed)
    model = FlowModel(cfg.flow_type, cfg.depth, cfg.width, cfg.bins, target=f"energy:{cfg.energy}")
    init_actnorm(model, init_batch)
    return model


def _fit_rows(models, energy, n: int) -> dict[str, float]:
    """fit_report of each flow as loss-table columns, e.g. energy_fit_reverse_kl."""
    row = {}
    for name, prefix in FITS.items():
        if name in models:
            report = fit_report(models[name], energy, n=n, seed=EVAL_SEED)
            for key in ("reverse_kl", "forward_kl", "ess", "modes_covered"):
                value = getattr(report, key)
                if value is not None:
                    row[f"{prefix}_{key}"] = float(value)
    return row


def build_energy_task(cfg, loop: LoopConfig, init: FlowModel | None = None) -> TrainTask:
    """The TrainTask of a reverse-KL fit of ``cfg.energy`` (a ``train.FlowConfig``), with the
    fit to samples beside it when ``cfg.compare_samples``.

    Args:
        init: a flow to continue fitting; a new one otherwise.
    """
    energy = get_energy(cfg.energy)
    quad = quadrature(energy.name)
    rank = int(os.environ.get("RANK", "0"))  # DDP workers each draw their own noise
    data = energy_batches(cfg.batch_size, loop.seed + 1 + 1000 * rank,
                          quad if cfg.compare_samples else None)
    first = next(data)
    models = {"flow": init if init is not None else new_flow(cfg, loop.seed, first[0])}
    if cfg.compare_samples:
        models["samples_fit"] = new_flow(cfg, loop.seed, first[1])  # same init weights
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr) for k, m in models.items()}
    total = loop.max_steps or cfg.steps

    def step(ctx: StepContext, batch) -> dict[str, float]:
        z, x_p = batch
        acc = ctx.accelerator
        lr = cfg.lr * warmup_cosine(ctx.step, total, cfg.warmup, cfg.final_lr_frac)
        row = {"lr": lr}
        loss = reverse_kl_loss(ctx.models["flow"], energy, z.to(acc.device))
        _update(acc, ctx.models["flow"], ctx.optimizers["flow"], loss, lr, cfg.grad_clip)
        row["loss"] = loss.item()  # E_q[log q − log p̃] = KL(q‖p) − log Z
        row["energy_fit_kl"] = loss.item() + quad.log_z  # on this batch
        if x_p is not None:
            nll = -ctx.models["samples_fit"](x_p.to(acc.device)).mean()
            _update(acc, ctx.models["samples_fit"], ctx.optimizers["samples_fit"], nll, lr,
                    cfg.grad_clip)
            row["sample_fit_kl"] = nll.item() - quad.entropy  # KL(p‖q) = NLL − H(p)
        return row

    def sample(models, step_no: int) -> dict:
        out = {}
        for name, prefix in FITS.items():
            if name in models:
                logq, _ = density_grid(models[name], cfg.sample_grid)
                pts = models[name].sample(cfg.sample_points, torch.Generator().manual_seed(0))
                out[prefix] = {"logq": logq.numpy(), "samples": pts.cpu().numpy()}
        return out

    evaluated = [-total]

    def evaluate(models, step_no: int) -> dict[str, float]:
        # a fit report costs ~30 training steps (2 × n samples through the flow): at the
        # first logged step of each tenth of the run, and at the end
        if step_no - evaluated[0] < total / EVALUATIONS and step_no != total:
            return {}
        evaluated[0] = step_no
        return _fit_rows(models, energy, cfg.n_test)

    summary = {"flow_config": dataclasses.asdict(cfg),
               "data": f"energy {energy.name} (reverse KL, no samples)",
               "log_z_quadrature": quad.log_z}
    return TrainTask(models=models, optimizers=optimizers, batches=_prepend(first, data),
                     step=step, save=lambda ms, folder: ms["flow"].save_pretrained(folder),
                     sample=sample, evaluate=evaluate, summary=summary)


def _update(acc, model, optimizer, loss, lr: float, clip: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def _prepend(first, rest):
    yield first
    yield from rest
