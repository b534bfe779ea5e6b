"""Fitting a flow to an energy (reverse KL) and judging any flow against one: the maths.

A flow q can be fitted two ways:

- to samples of p (forward KL, maximum likelihood): minimise E_p[−log q(x)], which needs data;
- to an unnormalised density p̃ = Z·p (reverse KL): minimise E_q[log q(x) − log p̃(x)]
  = KL(q‖p) − log Z, with x = f⁻¹(z), z ~ N(0, I) drawn by the flow itself, so the gradient
  flows through the samples (the reparameterisation trick). It needs no data, only p̃.

KL(p‖q) is large wherever p has mass that q lacks, so the forward fit spreads over every mode;
KL(q‖p) is large wherever q puts mass that p lacks, so the reverse fit stays inside p and may
settle on some modes and miss others ("mode seeking"). ``fit_report`` measures both and the
effective sample size of the importance weights w = p̃/q (1: q is p; near 0: a few samples
carry all the weight).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from playground.flow.energies import Energy, quadrature

ONE_SENTENCE = ("Fitting to samples (forward KL) covers every mode the data shows; fitting to "
                "an energy (reverse KL) needs no data, only p̃, but tends to lock onto some "
                "modes and miss others.")
COVERED_SHARE = 0.2  # a mode counts as covered when q puts ≥ 20% of its fair share there
MODE_RADIUS = 3.0  # a sample belongs to a mode within 3 standard deviations of its centre


def reverse_kl_loss(model, energy: Energy, z: torch.Tensor) -> torch.Tensor:
    """E_q[log q(x) − log p̃(x)] over the batch (nats): KL(q‖p) − log Z, the training loss.
    ``z`` (N, 2) is base noise; x = f⁻¹(z) carries the gradient back into the flow."""
    x, log_q = model(z, from_base=True)
    return (log_q - energy.log_p(x)).mean()


def effective_sample_size(log_w: torch.Tensor) -> float:
    """(Σw)² / (n·Σw²) of importance weights given as logs: in (0, 1]."""
    log_w = log_w.double()
    return math.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)
                    - math.log(len(log_w)))


def mode_shares(x: torch.Tensor, energy: Energy) -> list[float]:
    """Fraction of the points ``x`` (N, 2) within MODE_RADIUS standard deviations of each of
    the energy's mode centres."""
    centers = torch.tensor(energy.modes, dtype=x.dtype)
    near = (x[:, None, :] - centers).norm(dim=-1) < MODE_RADIUS * energy.mode_std  # (N, K)
    return near.double().mean(0).tolist()


@dataclass
class FitReport:
    """How well a flow q matches an energy (nats; None where it does not apply)."""

    reverse_kl_up_to_log_z: float  # E_q[log q − log p̃] = KL(q‖p) − log Z: what the fit sees
    log_z: float  # log Z by quadrature on the grid
    reverse_kl: float  # KL(q‖p), true (the line above + log Z)
    reverse_kl_se: float  # its Monte-Carlo standard error
    forward_kl: float  # KL(p‖q) from samples of p (what a fit to samples minimises)
    ess: float  # effective sample size of w = p̃/q per sample, in (0, 1]
    log_z_importance: float  # log mean w: the flow's own estimate of log Z
    modes_covered: int | None = None  # modes given ≥ COVERED_SHARE of their fair share
    modes: int | None = None
    mode_shares: list[float] | None = None  # per mode, the fraction of q's samples near it

    def as_dict(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) else
                    [round(s, digits) for s in v] if isinstance(v, list) else v)
                for k, v in asdict(self).items()}


@torch.no_grad()
def fit_report(model, energy: Energy, n: int = 4000, seed: int = 0) -> FitReport:
    """Judge the flow ``model`` against ``energy`` with ``n`` samples of q and ``n`` of p
    (both drawn from CPU generators seeded with ``seed``: same seed ⇒ same report)."""
    quad = quadrature(energy.name)
    device = next(model.parameters()).device
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    x, log_q = (t.double().cpu() for t in model.rsample_and_log_prob(z.to(device)))
    log_w = energy.log_p(x) - log_q  # log p̃/q, (n,)
    ok = torch.isfinite(log_w)
    log_w = torch.where(ok, log_w, torch.full_like(log_w, -math.inf))
    gap = -log_w[ok]
    p_x = quad.sample(n, torch.Generator().manual_seed(seed + 1))
    log_q_p = model.log_prob(p_x.to(device)).double().cpu()
    log_p_p = energy.log_p(p_x.double()) - quad.log_z
    report = FitReport(
        reverse_kl_up_to_log_z=gap.mean().item(), log_z=quad.log_z,
        reverse_kl=gap.mean().item() + quad.log_z,
        reverse_kl_se=gap.std().item() / math.sqrt(max(1, len(gap))),
        forward_kl=(log_p_p - log_q_p).mean().item(), ess=effective_sample_size(log_w),
        log_z_importance=(torch.logsumexp(log_w, 0) - math.log(n)).item())
    if energy.modes:
        shares = mode_shares(x, energy)
        fair = 1.0 / len(energy.modes)
        report.modes, report.mode_shares = len(energy.modes), shares
        report.modes_covered = sum(s >= COVERED_SHARE * fair for s in shares)
    return report
