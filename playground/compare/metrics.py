"""One score for all five families, on held-out target points, each with a standard error.

- **Energy distance** (Székely & Rizzo): D² = 2 E|X - Y| - E|X - X'| - E|Y - Y'|. It needs only
  samples (so a GAN is scored like the rest), the U-statistic below is unbiased, and D² = 0 if and
  only if the two distributions are equal. The standard error is a delete-a-group jackknife.
- **Mode coverage** where the target has modes (8 Gaussians: the 8 centres; rings: the 3 rings):
  samples within 3 σ of a mode belong to it; a mode is covered when it holds at least
  ``MIN_SHARE`` of the samples it should hold.
- **Negative log-likelihood** (nats per point): exact for the flow and the autoregressive model;
  an upper bound for the VAE (-ELBO, and the tighter importance-weighted bound) and for
  diffusion (the variational bound); none for the GAN (``NO_NLL_REASON``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from playground.compare import diffusion
from playground.compare.model import vae_elbo, vae_iwae
from playground.compare.sampling import draw, log_density
from playground.data.targets2d import G8_RADIUS, G8_STD, RING_RADII, RING_STD, TARGETS

NO_NLL_REASON = ("A GAN's generator maps noise to points without any density to evaluate, and "
                 "its discriminator scores realism, not probability, so it has no likelihood.")
MIN_SHARE = 0.2  # a mode is covered when it holds >= 20 % of its expected number of samples
IWAE_K = 64


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float  # one standard error

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} ± {self.se:.{digits}f}"


def mean_se(values: torch.Tensor) -> Estimate:
    values = values.double()
    se = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return Estimate(values.mean().item(), se)


def _block_sums(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """(G, G) sums of |a_i - b_j| over the pairs whose i is in group g and j in group h."""
    ga, gb = a.chunk(groups), b.chunk(groups)
    return torch.stack([torch.stack([torch.cdist(x, y).sum() for y in gb]) for x in ga])


def _energy_from_sums(sxy, sxx, syy, nx, ny) -> torch.Tensor:
    """The unbiased U-statistic from total pair sums (the diagonal |x_i - x_i| is zero)."""
    return 2 * sxy / (nx * ny) - sxx / (nx * (nx - 1)) - syy / (ny * (ny - 1))


def energy_distance(x: torch.Tensor, y: torch.Tensor, groups: int = 20) -> Estimate:
    """Energy distance D² between (N, 2) samples ``x`` and (M, 2) held-out points ``y``.

    The value is the unbiased U-statistic on all points; its standard error is the
    delete-a-group jackknife over ``groups`` groups of each sample (one pass of distances).
    """
    x, y = x.double().cpu(), y.double().cpu()
    groups = max(2, min(groups, len(x) // 5, len(y) // 5))
    sxy, sxx, syy = _block_sums(x, y, groups), _block_sums(x, x, groups), _block_sums(y, y, groups)
    nx = torch.tensor([len(c) for c in x.chunk(groups)], dtype=torch.float64)
    ny = torch.tensor([len(c) for c in y.chunk(groups)], dtype=torch.float64)
    full = _energy_from_sums(sxy.sum(), sxx.sum(), syy.sum(), nx.sum(), ny.sum())
    # leaving group g out of both samples removes its rows and columns from every sum
    def without(s, g):
        return s.sum() - s[g].sum() - s[:, g].sum() + s[g, g]
    loo = torch.stack([_energy_from_sums(without(sxy, g), without(sxx, g), without(syy, g),
                                         nx.sum() - nx[g], ny.sum() - ny[g])
                       for g in range(groups)])
    se = ((groups - 1) / groups * ((loo - loo.mean()) ** 2).sum()).sqrt()
    return Estimate(float(full), float(se))


@dataclass
class Modes:
    """A target's modes: ``assign`` maps (N, 2) points to a mode index or -1 (none)."""

    names: list[str]
    shares: torch.Tensor  # expected fraction of samples in each mode

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GaussianModes(Modes):
    def __init__(self, centers: torch.Tensor, radius: float) -> None:
        super().__init__([f"({c[0]:+.1f}, {c[1]:+.1f})" for c in centers.tolist()],
                         torch.full((len(centers),), 1 / len(centers)))
        self.centers, self.radius = centers, radius

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(x.double(), self.centers.double())  # (N, K)
        best, index = dist.min(1)
        return torch.where(best <= self.radius, index, torch.full_like(index, -1))


class RingModes(Modes):
    def __init__(self, radii: tuple[float, ...], width: float) -> None:
        r = torch.tensor(radii)
        super().__init__([f"ring r={v:g}" for v in radii], r / r.sum())
        self.radii, self.width = r, width

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        dist = (x.norm(dim=1)[:, None].double() - self.radii.double()).abs()
        best, index = dist.min(1)
        return torch.where(best <= self.width, index, torch.full_like(index, -1))


def target_modes(target: str) -> Modes | None:
    if target == "8gaussians":
        angles = torch.arange(8) * (2 * math.pi / 8)
        centers = G8_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
        return GaussianModes(centers, 3 * G8_STD)
    if target == "rings":
        return RingModes(RING_RADII, 3 * RING_STD)
    return None


@dataclass
class ModeCoverage:
    counts: list[int]  # samples per mode
    covered: int
    total: int
    in_modes: float  # fraction of samples within 3 σ of some mode ("high quality")

    @property
    def missed(self) -> int:
        return self.total - self.covered


def mode_coverage(samples: torch.Tensor, modes: Modes) -> ModeCoverage:
    index = modes.assign(samples)
    counts = torch.bincount(index[index >= 0], minlength=len(modes.names))
    need = MIN_SHARE * modes.shares * len(samples)
    return ModeCoverage([int(c) for c in counts], int((counts >= need).sum()), len(modes.names),
                        float((index >= 0).float().mean()))


@dataclass
class Likelihood:
    """-log-likelihood (nats per point): exact, an upper bound, or none (``value`` None)."""

    kind: str  # "exact" | "bound (-ELBO)" | "bound (variational)" | "none"
    value: float | None = None
    se: float | None = None
    tighter: Estimate | None = None  # the VAE's importance-weighted bound
    note: str = ""


def likelihood(family: str, model, x: torch.Tensor, seed: int = 0) -> Likelihood:
    """The family's negative log-likelihood of held-out points (N, 2), as exact as it gets."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if family in ("flow", "ar"):
            est = mean_se(-log_density(family, model, x))
            return Likelihood("exact", est.value, est.se)
        if family == "vae":
            eps = torch.randn(len(x), model.latent_dim, generator=gen)
            elbo = mean_se(-vae_elbo(model, x, eps))
            iwae = mean_se(torch.cat([-vae_iwae(model, xb, IWAE_K, gen) for xb in x.split(500)]))
            return Likelihood("bound (-ELBO)", elbo.value, elbo.se, iwae,
                              f"importance-weighted bound, k={IWAE_K}: {iwae.text()}")
        if family == "diffusion":
            est = mean_se(diffusion.variational_bound(model, x, gen))
            return Likelihood("bound (variational)", est.value, est.se,
                              note=f"sum over all {model.config.num_train_timesteps} steps")
    return Likelihood("none", note=NO_NLL_REASON)


def target_entropy(target: str, x: torch.Tensor) -> Estimate | None:
    """E_p[-log p] of held-out points where the target's density is known (nats)."""
    tgt = TARGETS.get(target)
    if tgt is None or tgt.log_prob is None:
        return None
    return mean_se(-tgt.log_prob(x))


@dataclass
class FamilyScore:
    family: str
    distance: Estimate  # energy distance to the held-out points
    likelihood: Likelihood
    coverage: ModeCoverage | None
    samples_per_s: float
    n_samples: int
    extra: dict = field(default_factory=dict)


def score_family(family: str, model, held_out: torch.Tensor, target: str, *, seed: int = 0,
                 latent_scale: float = 1.0) -> FamilyScore:
    """Score one fitted model against held-out points: draws as many samples as there are
    held-out points (full DDPM sampling for diffusion), times the draw."""
    t0 = time.perf_counter()
    samples = draw(family, model, len(held_out), torch.Generator().manual_seed(seed),
                   latent_scale=latent_scale)
    rate = len(held_out) / max(time.perf_counter() - t0, 1e-9)
    modes = target_modes(target)
    return FamilyScore(family, energy_distance(samples, held_out),
                       likelihood(family, model, held_out, seed),
                       mode_coverage(samples, modes) if modes is not None else None,
                       rate, len(held_out))
