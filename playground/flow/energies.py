"""Unnormalised 2-D densities ("energies") for fitting a flow by reverse KL, and their
normalisers by quadrature.

Each energy gives log p̃(x) for (N, 2) points, where p(x) = p̃(x) / Z and Z is unknown to the
fit. Here Z is computed once by the midpoint rule on a fine grid over [-QUAD_BOX, QUAD_BOX]²
(``quadrature``), so the true KL(q‖p) can be shown; where Z has a closed form it is given too,
and a test checks the grid against it. The same grid gives exact-enough samples of p (pick a
cell by its mass, then a uniform point in it), which the fit to samples (forward KL) uses.

Most of each energy's mass lies in the plotting box [-4, 4]² (``targets.BOX``); the funnel's
wide mouth and the wave's tails reach a little past it, so the quadrature box is larger.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

from playground.core.errors import UserInputError

LOG_2PI = math.log(2 * math.pi)
QUAD_BOX = 12.0  # quadrature over [-12, 12]²: every energy's mass outside is below 1e-4
QUAD_RESOLUTION = 960  # cells per side: 0.025 wide, a few per standard deviation of the
#                        narrowest feature (the funnel's neck), so the midpoint rule is exact
#                        to well below 1e-4 in log Z


@dataclass(frozen=True)
class Energy:
    name: str
    label: str
    log_p: Callable[[torch.Tensor], torch.Tensor]  # (N, 2) -> (N,) unnormalised log-density
    log_z: float | None = None  # the exact log normaliser over R², where one is known
    modes: tuple[tuple[float, float], ...] = ()  # centres of well-separated modes (mixture)
    mode_std: float = 0.0  # each mode's standard deviation


# --- a correlated Gaussian: the case with a known answer (mean, covariance, Z) ---------------
GAUSS_MEAN = (1.0, -0.5)
GAUSS_COV = ((1.0, 0.6), (0.6, 0.8))


def _gauss_log_p(x: torch.Tensor) -> torch.Tensor:
    prec = torch.linalg.inv(torch.tensor(GAUSS_COV, dtype=x.dtype))
    d = x - torch.tensor(GAUSS_MEAN, dtype=x.dtype)
    return -0.5 * torch.einsum("ni,ij,nj->n", d, prec, d)


_GAUSS_LOG_Z = LOG_2PI + 0.5 * math.log(GAUSS_COV[0][0] * GAUSS_COV[1][1] - GAUSS_COV[0][1] ** 2)

# --- banana: x1 ~ N(0, a²), x2 | x1 ~ N(b·x1² − c, s²) (a sheared Gaussian: Z = 2π·a·s) -----
BANANA_A, BANANA_B, BANANA_C, BANANA_S = 1.25, 0.45, 1.8, 0.35


def _banana_log_p(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[:, 0], x[:, 1]
    return (-x1**2 / (2 * BANANA_A**2)
            - (x2 - BANANA_B * x1**2 + BANANA_C) ** 2 / (2 * BANANA_S**2))


# --- ring: |x| ~ N(R, s²) around the origin, uniform angle ------------------------------------
RING_R, RING_S = 2.5, 0.3


def _ring_log_p(x: torch.Tensor) -> torch.Tensor:
    return -(x.norm(dim=1) - RING_R) ** 2 / (2 * RING_S**2)


def _ring_log_z() -> float:
    """∫ 2πr·exp(−(r−R)²/2s²) dr over r ≥ 0 = 2π(s²·e^{−R²/2s²} + R·s·√(2π)·Φ(R/s))."""
    phi = 0.5 * (1 + math.erf(RING_R / (RING_S * math.sqrt(2))))
    return math.log(2 * math.pi * (RING_S**2 * math.exp(-RING_R**2 / (2 * RING_S**2))
                                   + RING_R * RING_S * math.sqrt(2 * math.pi) * phi))


# --- mixture: equal, well-separated Gaussians (reverse KL's mode seeking shows here) ---------
MIX_CENTERS = ((-2.5, -2.5), (-2.5, 2.5), (2.5, -2.5), (2.5, 2.5))
MIX_STD = 0.4


def _mixture_log_p(x: torch.Tensor) -> torch.Tensor:
    d2 = ((x[:, None, :] - torch.tensor(MIX_CENTERS, dtype=x.dtype)) ** 2).sum(-1)  # (N, K)
    return torch.logsumexp(-d2 / (2 * MIX_STD**2), 1)


# --- wave: x1 ~ N(0, e²), x2 | x1 ~ N(A·sin(πx1/2), s²) (sheared: Z = 2π·e·s) ---------------
WAVE_ENV, WAVE_AMP, WAVE_S = 1.6, 1.5, 0.35


def _wave_log_p(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[:, 0], x[:, 1]
    return (-x1**2 / (2 * WAVE_ENV**2)
            - (x2 - WAVE_AMP * torch.sin(math.pi * x1 / 2)) ** 2 / (2 * WAVE_S**2))


# --- Neal's funnel, upright: v = x2 ~ N(0, σ²), x1 | v ~ N(0, e^v) (Z = 2π·σ) -----------------
FUNNEL_STD = 1.0


def _funnel_log_p(x: torch.Tensor) -> torch.Tensor:
    x1, v = x[:, 0], x[:, 1]
    return -v**2 / (2 * FUNNEL_STD**2) - 0.5 * x1**2 * torch.exp(-v) - 0.5 * v


ENERGIES: dict[str, Energy] = {e.name: e for e in (
    Energy("banana", "Banana", _banana_log_p, math.log(2 * math.pi * BANANA_A * BANANA_S)),
    Energy("ring", "Ring", _ring_log_p, _ring_log_z()),
    Energy("mixture", "4 separated Gaussians", _mixture_log_p,
           math.log(len(MIX_CENTERS) * 2 * math.pi * MIX_STD**2), MIX_CENTERS, MIX_STD),
    Energy("wave", "Wave", _wave_log_p, math.log(2 * math.pi * WAVE_ENV * WAVE_S)),
    Energy("funnel", "Neal's funnel", _funnel_log_p, math.log(2 * math.pi * FUNNEL_STD)),
    Energy("gaussian", "Correlated Gaussian", _gauss_log_p, _GAUSS_LOG_Z),
)}
DEFAULT_ENERGY = "mixture"


def get_energy(name: str) -> Energy:
    if name not in ENERGIES:
        raise UserInputError(f"Unknown energy {name!r}; choose from {', '.join(ENERGIES)}.")
    return ENERGIES[name]


@dataclass(frozen=True)
class Quadrature:
    """An energy on the quadrature grid: its normaliser, entropy and a sampler of p."""

    log_z: float  # log ∫ p̃ by the midpoint rule
    entropy: float  # H(p) = log Z − E_p[log p̃] (nats)
    cdf: torch.Tensor  # (R*R,) cumulative cell probabilities, float64, row-major (y, then x)
    resolution: int
    box: float

    @property
    def cell(self) -> float:
        return 2 * self.box / self.resolution

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 2) float32 points of p: a cell by its probability, then uniform inside it."""
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        idx = torch.searchsorted(self.cdf, u * self.cdf[-1]).clamp_max(len(self.cdf) - 1)
        cells = torch.stack([idx % self.resolution, idx // self.resolution], 1)  # (col, row)
        jitter = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        return (-self.box + self.cell * (cells + jitter)).float()


def _cell_centers(resolution: int, box: float) -> torch.Tensor:
    """(R*R, 2) float64 centres, row-major: index = row * R + col, x = col, y = row."""
    cell = 2 * box / resolution
    coords = -box + cell * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    xs, ys = torch.meshgrid(coords, coords, indexing="xy")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)


@lru_cache(maxsize=16)
def quadrature(name: str, resolution: int = QUAD_RESOLUTION, box: float = QUAD_BOX) -> Quadrature:
    """The midpoint rule for ``name``'s energy on a resolution² grid over [-box, box]²
    (float64; cached, 7 MB per energy)."""
    log_p = get_energy(name).log_p(_cell_centers(resolution, box))
    log_z = float(torch.logsumexp(log_p, 0)) + 2 * math.log(2 * box / resolution)
    prob = torch.exp(log_p - log_p.max())
    prob = prob / prob.sum()
    entropy = log_z - float((prob * log_p).sum())
    return Quadrature(log_z, entropy, torch.cumsum(prob, 0), resolution, box)
