"""The X/Y grid (A1111's "X/Y/Z plot" in two dimensions): one image per pair of values of two
settings, everything else fixed, drawn as one labelled PNG that carries the whole record.

Axes: seed, guidance, steps, scheduler, prompt S/R (search/replace: the first value is a word
of the prompt, each value replaces it; the first cell is the prompt as typed) and the seed
variation strength. Values are comma-separated; seeds and steps also take ranges ("1-4").
A shared deployment caps the cells and the total denoising steps of one grid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from playground.core import registry, repro
from playground.core.errors import UserInputError, check_range
from playground.core.seeding import MAX_SEED
from playground.txt2img import FAMILY, drawing, suggested_settings
from playground.txt2img.inference import (
    MAX_GUIDANCE,
    MAX_STEPS,
    SCHEDULERS,
    Extras,
    generate,
    output_path,
    validate,
)
from playground.txt2img.variation import check_variation, variation_noise

AXES = ("Seed", "Guidance", "Steps", "Scheduler", "Prompt S/R", "Variation strength")
NO_AXIS = "none"  # the Y axis may be left out: one row
MAX_CELLS = int(os.environ.get("PLAYGROUND_TXT2IMG_GRID_CELLS", "16"))
MAX_TOTAL_STEPS = int(os.environ.get("PLAYGROUND_TXT2IMG_GRID_STEPS", "400"))
MAX_VALUES_CHARS = 500
CELL_SIDE = 192  # a cell is drawn at least this big
RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def _numbers(axis: str, items: list[str], low, high, integer: bool) -> list:
    values = []
    for item in items:
        span = RANGE.match(item) if integer else None
        if span:
            a, b = int(span[1]), int(span[2])
            if b < a or b - a >= MAX_CELLS:
                raise UserInputError(f"{axis}: the range {item!r} must go up and hold at most "
                                     f"{MAX_CELLS} values.")
            values += [check_range(axis, v, low, high, integer=True) for v in range(a, b + 1)]
        else:
            values.append(check_range(axis, item, low, high, integer=integer))
    return values


def parse_values(axis: str, text, prompt: str) -> list:
    """The values of one axis from comma-separated ``text``; a clear error for a bad one."""
    if axis not in AXES:
        raise UserInputError(f"Unknown axis {str(axis)[:40]!r}; choose one of {', '.join(AXES)}.")
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"Give the {axis} axis some values, separated by commas.")
    if len(text) > MAX_VALUES_CHARS:
        raise UserInputError(f"The {axis} values are too long ({len(text)} characters).")
    items = [t.strip() for t in text.split(",") if t.strip()]
    if axis == "Seed":
        return _numbers(axis, items, 0, MAX_SEED, integer=True)
    if axis == "Steps":
        return _numbers(axis, items, 1, MAX_STEPS, integer=True)
    if axis == "Guidance":
        return _numbers(axis, items, 0.0, MAX_GUIDANCE, integer=False)
    if axis == "Variation strength":
        return _numbers(axis, items, 0.0, 1.0, integer=False)
    if axis == "Scheduler":
        names = {n.lower(): n for n in SCHEDULERS}
        unknown = [i for i in items if i.lower() not in names]
        if unknown:
            raise UserInputError(f"Unknown scheduler {unknown[0]!r}; choose among "
                                 f"{', '.join(SCHEDULERS)}.")
        return [names[i.lower()] for i in items]
    if items[0] not in prompt:  # Prompt S/R
        raise UserInputError(f"Prompt S/R: the first value, {items[0]!r}, is what gets replaced,"
                             " so it must appear in the prompt.")
    return items


@dataclass
class GridPlan:
    """What a grid will make: the settings of every cell (row-major) and the labels."""
    model: str
    x_axis: str
    x_values: list
    y_axis: str
    y_values: list  # [None] without a Y axis
    cells: list[dict]  # ``generate`` keyword arguments per cell
    base: dict  # the settings every cell shares unless an axis changes them
    seed: int


def _apply(settings: dict, axis: str, value, search: str | None) -> dict:
    key = {"Seed": "seed", "Guidance": "guidance", "Steps": "steps", "Scheduler": "scheduler",
           "Variation strength": "variation_strength"}.get(axis)
    if key:
        return {**settings, key: value}
    if axis == "Prompt S/R":
        return {**settings, "prompt": settings["prompt"].replace(search, value)}
    return settings


def plan_grid(model: str, prompt: str, x_axis: str, x_values, y_axis: str = NO_AXIS,
              y_values="", *, negative_prompt: str = "", steps: int | None = None,
              guidance: float | None = None, seed: int = 0, scheduler: str = "DDIM",
              width: int | None = None, height: int | None = None,
              autoguidance: float | None = None, autoguidance_max_t: int | None = None,
              variation_seed: int | None = None, variation_strength: float = 0.0) -> GridPlan:
    """Check every input and cell before any work (the caps included)."""
    entry = registry.resolve(FAMILY, model)
    own = suggested_settings(entry)
    base = {"prompt": prompt, "negative_prompt": negative_prompt or "",
            "steps": own.steps if steps is None else steps,
            "guidance": own.guidance if guidance is None else guidance, "seed": seed,
            "scheduler": scheduler, "width": width, "height": height,
            "autoguidance": own.autoguidance if autoguidance is None else autoguidance,
            "autoguidance_max_t": (own.autoguidance_max_t if autoguidance_max_t is None
                                   else autoguidance_max_t)}
    validate(prompt, negative_prompt, base["steps"], base["guidance"], scheduler, 1,
             base["autoguidance"], base["autoguidance_max_t"])
    base["variation_seed"], base["variation_strength"] = check_variation(variation_seed,
                                                                         variation_strength)
    xs = parse_values(x_axis, x_values, prompt)
    y_axis = y_axis or NO_AXIS
    ys = [None] if y_axis == NO_AXIS else parse_values(y_axis, y_values, prompt)
    if x_axis == y_axis:
        raise UserInputError("Pick two different settings for the X and Y axes.")
    if len(xs) * len(ys) > MAX_CELLS:
        raise UserInputError(f"The grid would have {len(ys)} x {len(xs)} = {len(xs) * len(ys)}"
                             f" cells; this shared server makes at most {MAX_CELLS} per grid: "
                             "shorten a list of values.")
    if "Variation strength" in (x_axis, y_axis) and variation_seed in (None, ""):
        raise UserInputError("Set a variation seed to sweep the variation strength.")
    if "Variation strength" in (x_axis, y_axis):
        base["variation_seed"] = check_range("Variation seed", variation_seed, 0, MAX_SEED,
                                             integer=True)
    cells = []
    for y in ys:
        row = base if y is None else _apply(base, y_axis, y, ys[0])
        for x in xs:
            cells.append(_apply(row, x_axis, x, xs[0]))
    total = sum(c["steps"] for c in cells)
    if total > MAX_TOTAL_STEPS:
        raise UserInputError(f"The grid would run {total} denoising steps in all; this shared "
                             f"server runs at most {MAX_TOTAL_STEPS} per grid: fewer cells or "
                             "steps.")
    for cell in cells:  # a replaced prompt may have grown past the limit
        validate(cell["prompt"], negative_prompt, cell["steps"], cell["guidance"],
                 cell["scheduler"], 1, cell["autoguidance"], cell["autoguidance_max_t"])
    return GridPlan(entry.name, x_axis, xs, y_axis, ys, cells, base, seed)


def labels(axis: str, values: list) -> list[str]:
    if axis == NO_AXIS:
        return [""]
    if axis == "Prompt S/R":
        return [str(v) for v in values]
    return [f"{axis}: {v}" for v in values]


@dataclass
class GridProgress:
    """The grid after ``done`` of ``total`` cells; ``path`` and ``record`` on the last one."""
    done: int
    total: int
    image: Image.Image
    path: Path | None = None
    record: dict | None = None
    notes: list[str] = field(default_factory=list)
    cells: list[Image.Image | None] = field(default_factory=list)  # the images, unscaled


def run_grid(plan: GridPlan, stop: Callable[[], bool] | None = None,
             out_dir: Path | None = None) -> Iterator[GridProgress]:
    """Make the cells one by one (yielding the grid so far after each), then the PNG."""
    made: list[Image.Image | None] = [None] * len(plan.cells)
    columns = len(plan.x_values)
    tops, lefts = labels(plan.x_axis, plan.x_values), labels(plan.y_axis, plan.y_values)
    notes, first = [], None
    for i, cell in enumerate(plan.cells):
        if stop is not None and stop():
            notes.append(f"Stopped: {i} of {len(plan.cells)} cells made.")
            break
        extras = Extras(save=False)
        if cell["variation_strength"]:
            extras.noise = variation_noise(cell["variation_seed"], cell["variation_strength"])
        settings = {k: v for k, v in cell.items() if not k.startswith("variation")}
        result = generate(plan.model, **settings, n_images=1, show_steps=False, stop=stop,
                          extras=extras)
        made[i], first = result.images[0], first or result.record
        if result.stopped_at is not None:
            notes.append(f"Stopped in cell {i + 1} of {len(plan.cells)} at step "
                         f"{result.stopped_at}/{result.total_steps}.")
            break
        if i + 1 < len(plan.cells):
            yield GridProgress(i + 1, len(plan.cells),
                               drawing.labelled_grid(made, columns, tops, lefts, CELL_SIDE))
    image = drawing.labelled_grid(made, columns, tops, lefts, CELL_SIDE)
    if first is None:  # stopped before the first cell
        yield GridProgress(0, len(plan.cells), image, notes=notes, cells=made)
        return
    params = {**first["params"], **{k: plan.base[k] for k in ("prompt", "steps", "guidance",
                                                              "scheduler")},
              "view": "xy_grid", "x_axis": plan.x_axis, "x_values": plan.x_values,
              "y_axis": plan.y_axis, "y_values": [v for v in plan.y_values if v is not None],
              "variation_seed": plan.base["variation_seed"],
              "variation_strength": plan.base["variation_strength"],
              "cells_made": sum(m is not None for m in made)}
    params.pop("stopped_at_step", None)
    record = {**first, "params": params, "seed": plan.seed}
    path = repro.save_png(image, record, output_path("txt2img-grid", out_dir))
    yield GridProgress(params["cells_made"], len(plan.cells), image, path, record, notes, made)
