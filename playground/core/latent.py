"""Paths between latent vectors, shared by the GAN and VAE explorers."""

from __future__ import annotations

import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two vectors (D,): the direction moves along the great circle
    at constant angular speed and the length changes linearly from |a| to |b|.

    Falls back to linear interpolation for a zero vector or (anti)parallel vectors, where no
    unique great circle exists.
    """
    na, nb = a.norm(), b.norm()
    if na < 1e-12 or nb < 1e-12:
        return torch.lerp(a, b, t)
    ua, ub = a / na, b / nb
    omega = torch.arccos(torch.dot(ua, ub).clamp(-1, 1))
    if omega < 1e-4 or torch.pi - omega < 1e-4:
        return torch.lerp(a, b, t)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * torch.lerp(na, nb, t)
