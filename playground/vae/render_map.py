"""The face map as a picture (PIL and numpy only): every face's code as a point on the plane of
the first two principal components, coloured by person, the held-out people outlined.

The map is drawn at equal scale on both axes (a distance on the picture is a distance in the
plane, so the nearest point by eye is the nearest by number), and ``MapFrame`` maps pixels to
map points and back: the tab turns a click (gradio's ``SelectData.index``, pixels of the
picture) into (PC1, PC2) with ``to_map``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from playground.core.fonts import label_font

MAP_SIZE = 560  # px, square picture
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 62, 50  # margins around the plot square
PAD = 0.08  # empty border around the points, as a share of their spread
BACKGROUND, PLOT_BG, GRID, INK = (255, 255, 255), (248, 248, 248), (225, 225, 225), (30, 30, 30)


@dataclass(frozen=True)
class MapFrame:
    """The square of the plane shown (centre and half side, map units) and where it is drawn
    (left/top corner and side, px). Pixels are the picture's own (0 = left/top edge)."""

    cx: float
    cy: float
    half: float
    left: int
    top: int
    side: int

    def to_pixel(self, pc1: float, pc2: float) -> tuple[float, float]:
        """A map point → (column, row) in the picture; PC2 grows upwards."""
        col = self.left + (pc1 - self.cx + self.half) / (2 * self.half) * self.side
        row = self.top + (self.cy + self.half - pc2) / (2 * self.half) * self.side
        return col, row

    def to_map(self, col: float, row: float) -> tuple[float, float]:
        """(column, row) in the picture → the map point drawn there."""
        pc1 = self.cx - self.half + (col - self.left) / self.side * 2 * self.half
        pc2 = self.cy + self.half - (row - self.top) / self.side * 2 * self.half
        return pc1, pc2


def frame_for(coords: np.ndarray, size: int = MAP_SIZE) -> MapFrame:
    """The frame that shows every point (N, 2) with a border, at equal scale on both axes."""
    lo, hi = coords.min(0), coords.max(0)
    half = float((hi - lo).max()) / 2 * (1 + 2 * PAD) or 1.0
    side = min(size - LEFT - RIGHT, size - TOP - BOTTOM)
    return MapFrame(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, half, LEFT, TOP, side)


def person_colors(persons: np.ndarray, first=()) -> dict[int, tuple[int, int, int]]:
    """A distinct colour per person: hues spread by the golden ratio over the ids, the people
    in ``first`` (the held-out ones) taking the first, most different hues."""
    ids = sorted({int(p) for p in persons})
    ordered = [p for p in ids if p in set(first)] + [p for p in ids if p not in set(first)]
    colors = {}
    for rank, person in enumerate(ordered):
        hue = (rank * 0.618034) % 1.0
        hsv = np.array([[[hue * 255, 190, 215]]], np.uint8)
        colors[person] = tuple(int(v) for v in Image.fromarray(hsv, "HSV").convert("RGB")
                               .getpixel((0, 0)))
    return colors


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) inside [lo, hi]."""
    raw = (hi - lo) / max(1, target)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step)
    return [round(k * step, 10) for k in range(first, math.floor(hi / step) + 1)]


def _text(draw: ImageDraw.ImageDraw, xy, text: str, font, align: str = "left") -> None:
    """Text at ``xy`` = its left/centre/right edge (``align``) and vertical middle."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = xy[0] - {"left": 0, "center": (x1 - x0) / 2, "right": x1 - x0}[align] - x0
    draw.text((x, xy[1] - (y1 + y0) / 2), text, fill=INK, font=font)


def _axes(image: Image.Image, frame: MapFrame, labels: tuple[str, str]) -> None:
    """Plot square, grid lines and tick values, and the two axis titles."""
    draw = ImageDraw.Draw(image)
    right, bottom = frame.left + frame.side, frame.top + frame.side
    draw.rectangle([frame.left, frame.top, right, bottom], fill=PLOT_BG)
    font = label_font(12)
    for value in nice_ticks(frame.cx - frame.half, frame.cx + frame.half):
        col = frame.to_pixel(value, frame.cy)[0]
        draw.line([(col, frame.top), (col, bottom)], fill=GRID)
        _text(draw, (col, bottom + 10), f"{value:g}", font, "center")
    for value in nice_ticks(frame.cy - frame.half, frame.cy + frame.half):
        row = frame.to_pixel(frame.cx, value)[1]
        draw.line([(frame.left, row), (right, row)], fill=GRID)
        _text(draw, (frame.left - 5, row), f"{value:g}", font, "right")
    draw.rectangle([frame.left, frame.top, right, bottom], outline=(150, 150, 150))
    title = label_font(14)
    _text(draw, (frame.left + frame.side / 2, bottom + 32), labels[0], title, "center")
    box = draw.textbbox((0, 0), labels[1], font=title)
    label = Image.new("RGB", (box[2] + 4, box[3] + 4), BACKGROUND)
    ImageDraw.Draw(label).text((2, 2), labels[1], fill=INK, font=title)
    label = label.rotate(90, expand=True)
    image.paste(label, (6, int(frame.top + frame.side / 2 - label.height / 2)))


def _marker(draw: ImageDraw.ImageDraw, col: float, row: float, fill, held_out: bool) -> None:
    if held_out:  # outlined in black, a little larger
        draw.ellipse([col - 6, row - 6, col + 6, row + 6], fill=fill, outline=INK, width=2)
    else:
        edge = tuple(int(v * 0.6) for v in fill)
        draw.ellipse([col - 4, row - 4, col + 4, row + 4], fill=fill, outline=edge)


def _cross(draw: ImageDraw.ImageDraw, col: float, row: float) -> None:
    draw.line([(col - 6, row - 6), (col + 6, row + 6)], fill=INK, width=2)
    draw.line([(col - 6, row + 6), (col + 6, row - 6)], fill=INK, width=2)


def _legend(draw: ImageDraw.ImageDraw, title: str, origin_shown: bool) -> None:
    _text(draw, (14, 16), title, label_font(14))
    font, x, y = label_font(12), 14, 42
    entries = [("training people (colour = person)", False), ("held-out people", True)]
    for text, held in entries:
        _marker(draw, x, y, (150, 150, 150), held)
        _text(draw, (x + 12, y), text, font)
        x += 24 + draw.textbbox((0, 0), text, font=font)[2]
    if origin_shown:
        _cross(draw, x, y)
        _text(draw, (x + 12, y), "code 0 (prior mean)", font)


def draw_map(coords: np.ndarray, persons: np.ndarray, held_out: np.ndarray,
             explained: tuple[float, float], frame: MapFrame, title: str,
             origin: tuple[float, float] | None = None) -> Image.Image:
    """The map picture (MAP_SIZE² RGB).

    Args:
        coords: (N, 2) each face's (PC1, PC2); persons: (N,) person ids; held_out: (N,) bool.
        explained: the share of the codes' variance along PC1 and PC2 (axis titles).
        origin: where code 0 (the prior's mean) falls on the map, drawn as a cross if inside.
    """
    size = frame.left + frame.side + RIGHT
    image = Image.new("RGB", (size, frame.top + frame.side + BOTTOM), BACKGROUND)
    _axes(image, frame, (f"PC1 · {explained[0]:.1%} of the codes' variance",
                         f"PC2 · {explained[1]:.1%} of the codes' variance"))
    draw = ImageDraw.Draw(image)
    colors = person_colors(persons, first={int(p) for p in persons[held_out]})
    order = np.argsort(held_out, kind="stable")  # held-out people drawn on top
    for i in order:
        col, row = frame.to_pixel(float(coords[i, 0]), float(coords[i, 1]))
        _marker(draw, col, row, colors[int(persons[i])], bool(held_out[i]))
    shown = False
    if origin is not None:
        col, row = frame.to_pixel(*origin)
        shown = (frame.left <= col <= frame.left + frame.side
                 and frame.top <= row <= frame.top + frame.side)
        if shown:
            _cross(draw, col, row)
    _legend(draw, title, shown)
    return image
