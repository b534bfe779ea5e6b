"""The model families, in tab order. A family is ``playground/<name>/`` with:

- ``__init__.py``: ``TITLE``, ``ABOUT`` (two or three plain sentences + credits) and
  ``register_models()`` (adds its registry entries; cheap, loads nothing);
- ``tab.py``: ``build_tab()`` (components and events inside the current ``gr.Tab``);
- ``train.py``: ``PRESETS`` and ``train_cli(preset, loop, data) -> TrainResult``.

Only families whose folder exists get a tab, so there are never placeholder tabs.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

ORDER = ("txt2img", "gan", "vae", "gpt", "flow", "compare")


def available() -> list[str]:
    return [name for name in ORDER if importlib.util.find_spec(f"playground.{name}") is not None]


def load(name: str) -> ModuleType:
    """Import the family package and register its models."""
    module = importlib.import_module(f"playground.{name}")
    module.register_models()
    return module


def preload_all() -> list[str]:
    """Load every family's default model now (``<family>.preload()``, where a family has one).

    On ZeroGPU the app calls this at start-up, before any request: models placed on ``cuda``
    outside a ``spaces.GPU`` call are packed by ``spaces`` and reach every GPU call ready, where
    a model loaded inside one would be loaded again on every call.
    """
    done = []
    for name in available():
        preload = getattr(load(name), "preload", None)
        if preload is not None:
            preload()
            done.append(name)
    return done
