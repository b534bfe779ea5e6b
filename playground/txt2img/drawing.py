"""Pictures for the tab's views: a heat map over an image, and a labelled grid of images."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from playground.core.fonts import label_font
from playground.txt2img.preview import upscale

# the "inferno" colour map at five stops (dark = no attention, pale yellow = the most)
INFERNO = ((0.0, (0, 0, 4)), (0.25, (87, 16, 110)), (0.5, (188, 55, 84)),
           (0.75, (249, 142, 9)), (1.0, (252, 255, 164)))
BACKGROUND, INK, EMPTY = (255, 255, 255), (20, 20, 20), (60, 60, 66)


def colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours."""
    stops = [s for s, _ in INFERNO]
    channels = [np.interp(values, stops, [c[k] for _, c in INFERNO]) for k in range(3)]
    return np.stack(channels, -1).round().astype(np.uint8)


def stretch(values: torch.Tensor) -> torch.Tensor:
    """``values`` mapped linearly onto [0, 1], min to max (all zeros for a flat map)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else torch.zeros_like(values)


def heat_overlay(image: Image.Image, heat: torch.Tensor, side: int,
                 alpha: float = 0.65) -> Image.Image:
    """``heat`` (h, w), any scale, drawn over ``image`` upscaled to ``side`` (``upscale``): the
    map is interpolated bilinearly to the picture's size and stretched to [0, 1] (``stretch``).
    The image shows through in grey, so every colour on the picture is the map's."""
    base = upscale(image.convert("L").convert("RGB"), side)
    big = F.interpolate(heat.float()[None, None], size=(base.height, base.width),
                        mode="bilinear", align_corners=False)[0, 0]
    values = stretch(big).numpy()
    mixed = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * colormap(values)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))


def fit_text(text: str, width: float, face) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


@dataclass
class GridLayout:
    """Where ``labelled_grid`` draws: a label band ``top`` high and ``left`` wide, cells of
    ``cell`` (w, h) pixels ``gap`` apart, ``columns`` to a row."""
    columns: int
    rows: int
    left: int
    top: int
    cell: tuple[int, int]
    gap: int = 4

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of cell ``index`` (row-major)."""
        (w, h), g = self.cell, self.gap
        x = self.left + (index % self.columns) * (w + g)
        y = self.top + (index // self.columns) * (h + g)
        return x, y, x + w, y + h


def grid_layout(cells: list[Image.Image | None], columns: int, row_labels: list[str],
                side: int) -> GridLayout:
    face = label_font()
    made = [c for c in cells if c is not None]
    w, h = upscale(made[0], side).size if made else (side, side)
    left = 0 if not any(row_labels) else int(min(max(face.getlength(t) for t in row_labels) + 16,
                                                 max(w, 160)))
    return GridLayout(columns, math.ceil(len(cells) / columns), left, 28, (w, h))


def labelled_grid(cells: list[Image.Image | None], columns: int, column_labels: list[str],
                  row_labels: list[str], side: int) -> Image.Image:
    """Images in rows of ``columns`` (row-major; None = not made: a dark cell), each
    ``upscale``d to ``side``, a label above every column and left of every row
    (``grid_layout`` says where)."""
    face, at = label_font(), grid_layout(cells, columns, row_labels, side)
    (w, h), g = at.cell, at.gap
    canvas = Image.new("RGB", (at.left + columns * (w + g), at.top + at.rows * (h + g)),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(column_labels):
        draw.text((at.left + c * (w + g) + w / 2, at.top / 2), fit_text(label, w, face),
                  fill=INK, font=face, anchor="mm")
    for r, label in enumerate(row_labels):
        draw.text((8, at.top + r * (h + g) + h / 2), fit_text(label, at.left - 12, face),
                  fill=INK, font=face, anchor="lm")
    for i, cell in enumerate(cells):
        x0, y0, x1, y1 = at.box(i)
        if cell is None:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=EMPTY)
        else:
            canvas.paste(upscale(cell.convert("RGB"), side).resize((w, h)), (x0, y0))
    return canvas
