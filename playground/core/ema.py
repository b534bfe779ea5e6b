"""Exponential moving average of a model's weights (the EMA copy is what gets shipped)."""

from __future__ import annotations

import torch


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, *,
               copy_buffers: bool = True) -> None:
    """``ema ← decay·ema + (1 − decay)·model`` for every parameter.

    Buffers (e.g. batch-norm running statistics) are copied from ``model`` when
    ``copy_buffers``: an average of running statistics means nothing.
    """
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)
    if copy_buffers:
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)
