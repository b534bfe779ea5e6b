"""Face tensors for the GAN and the augmentations that make 400 photos go further.

Two kinds: (1) data augmentation of the real photos (mirror + shift of a few pixels: still
plausible faces, so G may learn them); (2) DiffAugment (Zhao et al. 2020): the same random
translation / cutout / brightness applied to real *and* generated images before D sees them,
so D cannot memorise the 400 photos and G is not pushed to produce augmented faces.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def faces_to_tensor(images: np.ndarray, size: int = 64) -> torch.Tensor:
    """(N, 64, 64) floats in [0, 1] -> (N, 1, size, size) in [-1, 1] (area-downsampled)."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate each image (B, C, H, W) by integer (dx, dy) pixels with edge padding."""
    b, _, h, w = x.shape
    pad = int(max(dx.abs().max(), dy.abs().max(), 0))
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    rows = (torch.arange(h)[None, :] + pad - dy[:, None]).clamp(0, h + 2 * pad - 1)  # (B, H)
    cols = (torch.arange(w)[None, :] + pad - dx[:, None]).clamp(0, w + 2 * pad - 1)  # (B, W)
    idx_b = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augment_real(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random horizontal mirror and a shift of up to ``max_shift`` pixels; x: (B, C, H, W)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift:
        dx = torch.randint(-max_shift, max_shift + 1, (b,), generator=gen)
        dy = torch.randint(-max_shift, max_shift + 1, (b,), generator=gen)
        x = shift(x, dx, dy)
    return x


def diff_augment(x: torch.Tensor, gen: torch.Generator, translate: float = 0.125,
                 cutout: float = 0.5, color: bool = True) -> torch.Tensor:
    """DiffAugment 'color,translation,cutout' for grey images; differentiable in x."""
    b, _, h, w = x.shape
    dev = x.device
    if color:
        x = x + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5).to(dev)  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(b, 1, 1, 1, generator=gen) + 0.5).to(dev) + mean  # contrast
    if translate:
        s = int(h * translate + 0.5)
        dx = torch.randint(-s, s + 1, (b,), generator=gen)
        dy = torch.randint(-s, s + 1, (b,), generator=gen)
        x = _shift_zero(x, dx.to(dev), dy.to(dev))
    if cutout:
        ch, cw = int(h * cutout + 0.5) // 2 * 2, int(w * cutout + 0.5) // 2 * 2
        cy = torch.randint(0, h + 1 - ch % 2, (b, 1, 1), generator=gen).to(dev)
        cx = torch.randint(0, w + 1 - cw % 2, (b, 1, 1), generator=gen).to(dev)
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        inside = ((ys - cy).abs() < ch // 2) & ((xs - cx).abs() < cw // 2)  # (B, H, W)
        x = x * (~inside)[:, None].to(x.dtype)
    return x


def _shift_zero(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate with zero fill (as DiffAugment does), by gathering from a padded copy."""
    b, _, h, w = x.shape
    pad = int(max(dx.abs().max(), dy.abs().max(), 1))
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = torch.arange(h, device=x.device)[None, :] + pad - dy[:, None]
    cols = torch.arange(w, device=x.device)[None, :] + pad - dx[:, None]
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
