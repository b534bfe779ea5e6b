"""Per-request seeding: every request builds its own ``torch.Generator`` from its seed."""

from __future__ import annotations

import secrets

import torch

from playground.core.errors import UserInputError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed accepts a signed 64-bit value


def resolve_seed(seed, randomize: bool = False) -> int:
    """Return the seed to use: a fresh random one if ``randomize``, else ``seed`` validated.

    Raises UserInputError for non-integers, negatives and values past 64 bits.
    """
    if randomize:
        return secrets.randbelow(2**31)
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        raise UserInputError("Seed is required (or tick 'randomize seed').")
    try:
        value = float(seed) if not isinstance(seed, int) else seed
    except (TypeError, ValueError):
        raise UserInputError(f"Seed must be a whole number, got {seed!r}.") from None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise UserInputError(f"Seed must be a whole number, got {seed!r}.")
        value = int(value)
    if isinstance(seed, str) and seed.strip().lstrip("-").isdigit():
        value = int(seed.strip())  # exact, even past float precision
    if not 0 <= value <= MAX_SEED:
        raise UserInputError(f"Seed must be between 0 and {MAX_SEED} (64-bit), got {seed}.")
    return value


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``; draw on CPU, then move tensors (as diffusers does),
    so the same seed gives the same numbers on every device."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def randn(shape, seed_or_generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on CPU from a seed/generator, then moved to ``device``."""
    gen = (seed_or_generator if isinstance(seed_or_generator, torch.Generator)
           else make_generator(seed_or_generator))
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device or "cpu", dtype)
