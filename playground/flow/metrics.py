"""Likelihood metrics: NLL in nats and a Monte-Carlo estimate of KL(p‖q) with its standard error."""

from __future__ import annotations

import math

import torch

from playground.data.targets2d import BOX, Target, grid_points


@torch.no_grad()
def log_prob_batched(model, x: torch.Tensor, batch: int = 20_000) -> torch.Tensor:
    """log q(x) for (N, 2) points, evaluated in chunks (no autograd)."""
    device = next(model.parameters()).device
    return torch.cat([model.log_prob(x[i:i + batch].to(device)).float().cpu()
                      for i in range(0, len(x), batch)])


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    se = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return values.mean().item(), se


def nll(model, x: torch.Tensor) -> tuple[float, float]:
    """Mean negative log-likelihood of the points (nats per point) and its standard error."""
    return mean_and_se(-log_prob_batched(model, x))


def kl_estimate(model, target: Target, n: int = 20_000, seed: int = 2024) -> dict:
    """KL(p‖q) = E_p[log p(x) − log q(x)], averaged over ``n`` fresh samples of p.

    Returns {"kl": nats, "kl_se": standard error, "n": n}. Needs an analytic target.
    """
    if target.log_prob is None:
        raise ValueError(f"target {target.name!r} has no analytic density")
    x = target.sample(n, torch.Generator().manual_seed(seed))
    diff = target.log_prob(x).double() - log_prob_batched(model, x).double()
    kl, se = mean_and_se(diff)
    return {"kl": kl, "kl_se": se, "n": n}


def density_grid(model, resolution: int = 200, box: float = BOX) -> tuple[torch.Tensor, float]:
    """log q on the grid as (R, R) (row 0 = top) and the probability mass inside the box."""
    pts, area = grid_points(resolution, box)
    logq = log_prob_batched(model, pts).reshape(resolution, resolution)
    return logq, float(logq.exp().sum() * area)
