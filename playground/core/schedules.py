"""Learning-rate shapes shared by the trainers (factors of the peak LR, for ``LambdaLR``)."""

from __future__ import annotations

import math


def cosine(progress: float, floor: float = 0.0) -> float:
    """Half a cosine from 1 (``progress`` = 0) down to ``floor`` (``progress`` >= 1)."""
    progress = min(1.0, max(0.0, progress))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.0, *,
                  warmup_offset: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps to 1, then a cosine to ``floor`` at ``total``.

    The warm-up factor is ``(step + warmup_offset) / warmup``: offset 0 starts at 0 on step 0
    (the flow's schedule), offset 1 starts at 1/warmup (the GPT's).
    """
    if step < warmup or (warmup_offset == 0 and step == warmup):
        return (step + warmup_offset) / max(1, warmup)
    return cosine((step - warmup) / max(1, total - warmup), floor)


def tail_cosine(step: int, total: int, decay_steps: int) -> float:
    """1 until the last ``decay_steps`` of ``total`` steps, then a cosine down to 0."""
    start = total - decay_steps
    if decay_steps <= 0 or step < start:
        return 1.0
    return cosine((step - start) / decay_steps)
