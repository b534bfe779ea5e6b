"""Built-in 2-D target distributions: samplers and, where one exists, the exact log-density.

All targets live in the box [-4, 4]² (the plotting box and the spline flows' comfortable domain).
Samplers take a ``torch.Generator`` so that the same seed gives the same points.
Shapes follow FFJORD's toy data sets (Grathwohl et al., 2018), written here from their definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

BOX = 4.0  # the plotting box is [-BOX, BOX]²
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    sample: Callable[[int, torch.Generator], torch.Tensor]  # (n, generator) -> (n, 2)
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None  # (n, 2) -> (n,)


# --- 8 Gaussians: an equal mixture of 8 isotropic Gaussians on a circle ---------------------
G8_RADIUS, G8_STD = 4.0 / math.sqrt(2), 0.5 / math.sqrt(2)


def _g8_centers() -> torch.Tensor:
    angles = torch.arange(8) * (2 * math.pi / 8)
    return G8_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], 1)  # (8, 2)


def sample_8gaussians(n: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(8, (n,), generator=gen)
    return _g8_centers()[idx] + G8_STD * torch.randn(n, 2, generator=gen)


def log_prob_8gaussians(x: torch.Tensor) -> torch.Tensor:
    d2 = ((x[:, None, :] - _g8_centers().to(x)) ** 2).sum(-1)  # (n, 8)
    comp = -d2 / (2 * G8_STD**2) - LOG_2PI - 2 * math.log(G8_STD)
    return torch.logsumexp(comp, 1) - math.log(8)


# --- checkerboard: uniform on 8 of the 16 2x2 cells of [-4, 4]² ------------------------------
def sample_checkerboard(n: int, gen: torch.Generator) -> torch.Tensor:
    x1 = torch.rand(n, generator=gen) * 4 - 2
    x2 = torch.rand(n, generator=gen) - torch.randint(0, 2, (n,), generator=gen) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1) * 2


def log_prob_checkerboard(x: torch.Tensor) -> torch.Tensor:
    cell = torch.floor(x / 2)  # cell indices in -2..1 inside the box
    inside = (x.abs() < BOX).all(1)
    on = ((cell[:, 0] + cell[:, 1]) % 2 == 0) & inside  # the sampler fills even cells
    density = torch.full((len(x),), -math.log(32.0), dtype=x.dtype)  # 8 cells of area 4
    return torch.where(on, density, torch.full_like(density, -math.inf))


# --- concentric rings: radius ~ N(R_k, s²), angle uniform; ring k chosen ∝ R_k ---------------
RING_RADII, RING_STD = (1.0, 2.0, 3.0), 0.12


def _ring_weights() -> torch.Tensor:
    radii = torch.tensor(RING_RADII)
    return radii / radii.sum()


def sample_rings(n: int, gen: torch.Generator) -> torch.Tensor:
    k = torch.multinomial(_ring_weights(), n, replacement=True, generator=gen)
    r = torch.tensor(RING_RADII)[k] + RING_STD * torch.randn(n, generator=gen)
    theta = torch.rand(n, generator=gen) * 2 * math.pi
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 1)


def log_prob_rings(x: torch.Tensor) -> torch.Tensor:
    """p(x) = Σ_k w_k N(|x|; R_k, s²) / (2π|x|) (the radius is never negative: R_k ≥ 8 s)."""
    r = x.norm(dim=1).clamp_min(1e-12)
    radii = torch.tensor(RING_RADII, dtype=x.dtype)
    comp = (-(r[:, None] - radii) ** 2 / (2 * RING_STD**2) - 0.5 * LOG_2PI - math.log(RING_STD)
            + _ring_weights().to(x).log())
    return torch.logsumexp(comp, 1) - torch.log(2 * math.pi * r)


# --- targets without a closed-form density ----------------------------------------------------
def sample_moons(n: int, gen: torch.Generator) -> torch.Tensor:
    upper = torch.rand(n, generator=gen) < 0.5
    t = torch.rand(n, generator=gen) * math.pi
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 2.5
    return pts + 0.1 * torch.randn(n, 2, generator=gen)


def sample_pinwheel(n: int, gen: torch.Generator) -> torch.Tensor:
    radial_std, tangential_std, classes, rate = 0.3, 0.1, 5, 0.25
    features = torch.randn(n, 2, generator=gen) * torch.tensor([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = torch.randint(classes, (n,), generator=gen)
    angles = labels * (2 * math.pi / classes) + rate * torch.exp(features[:, 0])
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (n, 2, 2)
    return 2 * torch.einsum("ni,nij->nj", features, rot)


def sample_spirals(n: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.sqrt(torch.rand(n, generator=gen)) * 540 * (2 * math.pi) / 360
    d1x = -torch.cos(t) * t + torch.rand(n, generator=gen) * 0.5
    d1y = torch.sin(t) * t + torch.rand(n, generator=gen) * 0.5
    flip = torch.rand(n, generator=gen) < 0.5
    pts = torch.stack([d1x, d1y], 1)
    pts = torch.where(flip[:, None], -pts, pts)
    return pts / 3 + 0.1 * torch.randn(n, 2, generator=gen)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("8gaussians", "8 Gaussians", sample_8gaussians, log_prob_8gaussians),
    Target("checkerboard", "Checkerboard", sample_checkerboard, log_prob_checkerboard),
    Target("rings", "Concentric rings", sample_rings, log_prob_rings),
    Target("moons", "Two moons", sample_moons),
    Target("pinwheel", "Pinwheel", sample_pinwheel),
    Target("spirals", "Two spirals", sample_spirals),
)}


def get_target(name: str) -> Target:
    from playground.core.errors import UserInputError

    if name not in TARGETS:
        raise UserInputError(f"Unknown target {name!r}; choose from {', '.join(TARGETS)}.")
    return TARGETS[name]


def grid_points(resolution: int, box: float = BOX) -> tuple[torch.Tensor, float]:
    """Cell centres of a resolution² grid over [-box, box]², row 0 at the top (y = +box).

    Returns ((R*R, 2) points, cell area).
    """
    step = 2 * box / resolution
    coords = -box + step * (torch.arange(resolution) + 0.5)
    ys, xs = torch.meshgrid(coords.flip(0), coords, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), step * step
