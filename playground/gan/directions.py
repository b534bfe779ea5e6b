"""Interpretable latent directions of a DCGAN generator: SeFa and a GANSpace-style PCA.

Both give orthonormal directions in z space (rows of ``LatentDirections.vectors``), ordered from
the one that changes the first layer's output most to the one that changes it least. An edit is
``z + sum_i strength_i * v_i``; strengths are in units of z's own standard deviation (z ~ N(0, I),
so a strength of 3 moves z three standard deviations along a unit direction).

- **SeFa** (Shen & Zhou 2021, closed form): the first layer is linear in z, ``y = W z (+ b)``, so
  the unit directions that change y most are the top eigenvectors of ``WᵀW``. Our first layer
  is a ``ConvTranspose2d(nz, C, 4, 1, 0)`` applied to a 1×1 "image": output ``(c, i, j)`` is
  ``sum_k z_k weight[k, c, i, j]``, so W is ``weight`` reshaped to (C·4·4, nz).
- **PCA** (GANSpace-style, Härkönen et al. 2020): PCA of the first *block's* activations
  (transposed conv → batch norm → ReLU: a nonlinear function of z) for many sampled z, mapped back
  to z by least-squares regression. We regress first and do the PCA second: with ``Y ≈ Z M``
  (M: (nz, D), fitted with an intercept on ``PCA_SAMPLES`` draws) and z ~ N(0, I), the fitted
  activations have covariance ``MᵀM``, and their principal components come from unit z-directions
  ``v_i`` = the top eigenvectors of ``M Mᵀ``, each explaining ``λ_i`` of the activations'
  variance. Unlike GANSpace's "PCA, then regress z on the coordinates" (whose z-vectors are not
  orthogonal), this keeps the directions exactly orthonormal and ordered by explained variance.
  If the block were linear (no batch norm, no ReLU) M would equal Wᵀ and PCA would equal SeFa;
  the gap between the two shows what batch norm's scales and the ReLU gates do.

No gradio here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from playground.core.errors import UserInputError
from playground.core.seeding import make_generator

METHODS = ("sefa", "pca")
PCA_SAMPLES = 2000  # z draws for the regression (>> nz = 100 predictors)
PCA_SEED = 0  # fixed: the same model always gives the same PCA directions
PCA_BATCH = 250


@dataclass
class LatentDirections:
    """Orthonormal directions in z, strongest first."""

    method: str  # "sefa" | "pca"
    vectors: torch.Tensor  # (K, nz) float64, rows orthonormal
    values: torch.Tensor  # (K,) descending: eigenvalues of WᵀW (sefa), explained variance (pca)
    total_variance: float  # pca: variance of the first block's activations; sefa: trace(WᵀW)

    @property
    def ratios(self) -> torch.Tensor:
        """Each direction's share of ``total_variance`` (pca: its explained-variance ratio)."""
        return self.values / self.total_variance

    def __len__(self) -> int:
        return len(self.vectors)


def first_layer(generator: nn.Module) -> nn.Module:
    """The layer that takes z: ``generator.main[0]`` (a transposed conv or a linear layer)."""
    main = getattr(generator, "main", None)
    layer = main[0] if isinstance(main, nn.Sequential) and len(main) else None
    if not isinstance(layer, (nn.ConvTranspose2d, nn.Linear)):
        raise UserInputError("Latent directions need a generator whose first layer (main.0) is a "
                             f"transposed convolution or a linear layer; this one has "
                             f"{type(layer).__name__}.")
    return layer


def first_layer_matrix(generator: nn.Module) -> torch.Tensor:
    """W (D, nz) float64 such that the first layer's flattened output is ``W z`` (+ bias)."""
    layer = first_layer(generator)
    if isinstance(layer, nn.Linear):
        return layer.weight.detach().double().cpu()
    if layer.groups != 1 or tuple(layer.dilation) != (1, 1) or any(layer.output_padding):
        raise UserInputError("Latent directions need a plain transposed convolution as the "
                             "first layer (no groups, dilation or output padding).")
    weight = layer.weight.detach().double().cpu()  # (nz, C, kh, kw)
    ph, pw = layer.padding  # on a 1×1 input, padding crops the kernel's border
    weight = weight[:, :, ph:weight.shape[2] - ph, pw:weight.shape[3] - pw]
    return weight.reshape(weight.shape[0], -1).T  # (C·kh·kw, nz)


def _top_eigenvectors(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors as rows of a symmetric PSD matrix (nz, nz),
    each eigenvector's sign fixed so that its largest-magnitude entry is positive."""
    values, vectors = torch.linalg.eigh(gram)  # ascending, vectors in columns
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1).T
    peak = vectors.gather(1, vectors.abs().argmax(1, keepdim=True))
    return values, vectors * torch.where(peak < 0, -1.0, 1.0).to(vectors)


def sefa_directions(generator: nn.Module) -> LatentDirections:
    """All nz SeFa directions: the eigenvectors of WᵀW, largest eigenvalue first."""
    w = first_layer_matrix(generator)
    values, vectors = _top_eigenvectors(w.T @ w)
    return LatentDirections("sefa", vectors, values, float(values.sum()))


def first_block(generator: nn.Module) -> nn.Module:
    """The first layer with its batch norm and activation (``main[:3]``, z -> activations)."""
    first_layer(generator)
    return generator.main[:3]


@torch.no_grad()
def pca_directions(generator: nn.Module, n_samples: int = PCA_SAMPLES,
                   seed: int = PCA_SEED) -> LatentDirections:
    """All nz PCA directions of the first block's activations, linearised in z (see above).

    The sums are accumulated batch by batch in float64, so memory stays at (nz, D).
    """
    nz, block = int(generator.nz), first_block(generator)
    device = next(generator.parameters()).device
    gen = make_generator(seed)
    sum_z = torch.zeros(nz, dtype=torch.float64)
    zz = torch.zeros(nz, nz, dtype=torch.float64)
    zy = sum_y = sum_y2 = None
    for start in range(0, n_samples, PCA_BATCH):
        z = torch.randn(min(PCA_BATCH, n_samples - start), nz, generator=gen)  # (B, nz)
        y = block(z[:, :, None, None].to(device)).flatten(1).double().cpu()  # (B, D)
        z = z.double()
        if zy is None:
            zy, sum_y, sum_y2 = (torch.zeros(nz, y.shape[1], dtype=torch.float64),
                                 torch.zeros(y.shape[1], dtype=torch.float64),
                                 torch.zeros(y.shape[1], dtype=torch.float64))
        sum_z += z.sum(0)
        zz += z.T @ z
        zy += z.T @ y
        sum_y += y.sum(0)
        sum_y2 += (y * y).sum(0)
    n = n_samples
    mean_z, mean_y = sum_z / n, sum_y / n
    zc_zc = zz - n * torch.outer(mean_z, mean_z)  # centred sums: Zcᵀ Zc, Zcᵀ Y
    zc_y = zy - n * torch.outer(mean_z, mean_y)
    m = torch.linalg.solve(zc_zc, zc_y)  # (nz, D): least squares Y ≈ mean + (z - mean_z) M
    total = float((sum_y2 - n * mean_y ** 2).sum() / (n - 1))
    values, vectors = _top_eigenvectors(m @ m.T)
    return LatentDirections("pca", vectors, values, total)


def latent_directions(generator: nn.Module, method: str) -> LatentDirections:
    if method not in METHODS:
        raise UserInputError(f"Direction method must be one of {', '.join(METHODS)}, got "
                             f"{str(method)[:40]!r}.")
    return sefa_directions(generator) if method == "sefa" else pca_directions(generator)


def edit_latent(z: torch.Tensor, directions: LatentDirections,
                picks: list[tuple[int, float]]) -> torch.Tensor:
    """``z + sum strength * v_index`` for (1-based index, strength) pairs; z: (nz,) float32.

    A strength of 0 adds nothing at all, so the unedited face comes back bit for bit.
    """
    out = z.clone()
    for index, strength in picks:
        if strength:
            out = out + float(strength) * directions.vectors[index - 1].to(z)
    return out
