"""Principal components of a set of latent codes: the latent explorer's directions and the
face map's two axes (``playground.vae.inside``) come from here.

The SVD runs in float64 on the centred codes, and each direction's sign is fixed (its largest
entry is positive), so the same codes always give the same directions and the same map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PCAFit:
    """The top ``K`` principal directions of N codes of D numbers (float64)."""

    center: torch.Tensor  # (D,) mean code
    components: torch.Tensor  # (K, D) orthonormal rows, by decreasing variance
    explained: torch.Tensor  # (K,) share of the codes' total variance along each direction
    total_variance: float  # summed over all D directions (unbiased, per code)

    @property
    def std(self) -> torch.Tensor:
        """(K,) standard deviation of the codes along each direction."""
        return (self.explained * self.total_variance).sqrt()

    def project(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (N, D) → their coordinates (N, K) on the directions."""
        return (codes.double() - self.center) @ self.components.T

    def unproject(self, coords: torch.Tensor) -> torch.Tensor:
        """Coordinates (N, K) → codes (N, D): the mean code plus the directions; every other
        direction stays at the mean (the inverse PCA)."""
        return self.center + coords.double() @ self.components


def fit_pca(codes: torch.Tensor, k: int) -> PCAFit:
    """PCA of ``codes`` (N, D) by the SVD of the centred codes; ``k`` <= min(N, D)."""
    codes = codes.double()
    n, d = codes.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k={k} directions need at least {k} codes of at least {k} numbers, "
                         f"got {n} codes of {d}")
    center = codes.mean(0)
    _, s, vh = torch.linalg.svd(codes - center, full_matrices=False)
    components = vh[:k].clone()
    # fix each direction's sign: its largest entry (by size) is positive
    largest = components.abs().argmax(dim=1)
    signs = torch.sign(components[torch.arange(k), largest])
    components *= signs[:, None]
    power = s.pow(2)
    total = float(power.sum())
    explained = power[:k] / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    return PCAFit(center, components, explained, total / max(1, n - 1))
