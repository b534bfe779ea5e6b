"""Named presets: every family keeps a dataclass config and a ``PRESETS`` dict; one function turns
a preset name plus ``--set KEY=VALUE`` overrides into a config, with the same messages for all."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from playground.core.errors import UserInputError

C = TypeVar("C")


def resolve_preset(presets: dict[str, C], preset: str, overrides: dict | None = None, *,
                   family: str = "") -> C:
    """``presets[preset]`` with ``overrides`` applied (a fresh dataclass).

    Raises UserInputError for an unknown preset or an unknown field; the family checks the
    values of its own fields afterwards.
    """
    if preset not in presets:
        raise UserInputError(f"Unknown preset {preset!r}; choose from {sorted(presets)}.")
    base = presets[preset]
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = set(overrides or {}) - fields
    if unknown:
        what = f"{family} setting(s)" if family else "setting(s)"
        raise UserInputError(f"Unknown {what} {sorted(unknown)}; known: {sorted(fields)}.")
    return dataclasses.replace(base, **(overrides or {}))
