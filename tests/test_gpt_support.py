"""Helpers for the GPT tests (no tests here): tiny text and a tiny trained model, built once."""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

WORDS = ("the lady said that her sister was very kind and the gentleman walked to the house "
         "while they spoke of the ball at netherfield with great delight").split()


def tiny_text(paragraphs: int = 120, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(40)) + "."
                       for _ in range(paragraphs))


@lru_cache(maxsize=1)
def tiny_model_dir(root: str) -> Path:
    """Train the 'tiny' preset for 30 steps into ``root``/tiny-gpt and register it as
    'test-tiny-gpt' (cached per test session)."""
    from playground.core import registry
    from playground.core.training import LoopConfig
    from playground.gpt.train import PRESETS, run_training

    out = Path(root) / "tiny-gpt"
    loop = LoopConfig(max_steps=30, out_dir=str(out), log_every=10, progress=False,
                      checkpoint_dir=str(Path(root) / "tiny-gpt-ckpt"))
    run_training(PRESETS["tiny"], loop, tiny_text())
    registry.register(registry.ModelEntry("test-tiny-gpt", "gpt", path=out))
    return out
