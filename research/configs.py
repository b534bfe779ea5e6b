"""What the research trainers share: a product config as a research config with switches."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

R = TypeVar("R")


def with_switches(research_cls: type[R], cfg, **switches) -> R:
    """``cfg`` (a product config dataclass) as ``research_cls`` (its research subclass), the
    product's fields kept and ``switches`` (the subclass's fields, or product fields) set."""
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return research_cls(**{**base, **switches})
