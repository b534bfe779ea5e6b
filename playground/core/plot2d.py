"""Pictures with PIL and numpy only (matplotlib is not a dependency): heatmaps, point clouds and the
layer-by-layer small multiples. Every picture shows the box [-BOX, BOX]², so a pixel maps back to
a point with ``pixel_to_point``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from playground.core.fonts import label_font
from playground.data.targets2d import BOX

# viridis, sampled at 9 points (matplotlib's colour map, CC0)
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], np.float64)
BACKGROUND = (255, 255, 255)
POINT = (230, 60, 40)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis RGB (uint8, shape values.shape + (3,))."""
    pos = np.clip(values, 0, 1) * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)


def density_image(logq: np.ndarray, size: int = 400) -> Image.Image:
    """A (R, R) log-density grid (row 0 = top) as a size×size heatmap of the density.

    The density is scaled by its 99.5th percentile so one sharp peak does not wash out the rest.
    """
    dens = np.exp(np.nan_to_num(logq - np.nanmax(logq), nan=-np.inf, neginf=-np.inf))
    top = np.percentile(dens, 99.5) or 1.0
    image = Image.fromarray(colormap(dens / top), "RGB")
    return image.resize((size, size), Image.Resampling.BILINEAR)


def to_pixels(points: np.ndarray, size: int, box: float = BOX) -> np.ndarray:
    """(N, 2) points → (N, 2) pixel coordinates (col, row) in a size×size picture of the box."""
    cols = (points[:, 0] + box) / (2 * box) * size
    rows = (box - points[:, 1]) / (2 * box) * size
    return np.stack([cols, rows], 1)


def pixel_to_point(col: float, row: float, size: int, box: float = BOX) -> tuple[float, float]:
    return -box + (col + 0.5) * 2 * box / size, box - (row + 0.5) * 2 * box / size


def draw_points(image: Image.Image, points: np.ndarray, color=POINT, radius: float = 1.5,
                box: float = BOX, colors: np.ndarray | None = None) -> Image.Image:
    draw = ImageDraw.Draw(image)
    for i, (c, r) in enumerate(to_pixels(np.asarray(points), image.width, box)):
        if 0 <= c < image.width and 0 <= r < image.height:
            fill = tuple(int(v) for v in colors[i]) if colors is not None else color
            draw.ellipse([c - radius, r - radius, c + radius, r + radius], fill=fill)
    return image


def scatter_image(points: np.ndarray, size: int = 400, color=POINT) -> Image.Image:
    image = Image.new("RGB", (size, size), BACKGROUND)
    _frame(image)
    return draw_points(image, points, color)


def _frame(image: Image.Image, box: float = BOX) -> None:
    """Light axes through the origin and a border, so shapes can be compared across panels."""
    draw = ImageDraw.Draw(image)
    mid = image.width / 2
    draw.line([(mid, 0), (mid, image.height)], fill=(215, 215, 215))
    draw.line([(0, mid), (image.width, mid)], fill=(215, 215, 215))
    draw.rectangle([0, 0, image.width - 1, image.height - 1], outline=(160, 160, 160))


def angle_colors(z: np.ndarray) -> np.ndarray:
    """Colour each base point by its angle (a hue wheel), so points can be followed by eye."""
    hue = (np.arctan2(z[:, 1], z[:, 0]) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue * 255, np.full_like(hue, 200), np.full_like(hue, 220)], 1)
    return np.asarray(Image.fromarray(hsv.astype(np.uint8)[None], "HSV").convert("RGB"))[0]


def layer_panel(lines: list[np.ndarray], points: np.ndarray, colors: np.ndarray, title: str,
                size: int = 200, box: float = 4.5) -> Image.Image:
    """One small multiple: warped grid lines (each (K, 2)) and coloured points, with a title."""
    image = Image.new("RGB", (size, size + 34), BACKGROUND)
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    _frame(canvas, box)
    draw = ImageDraw.Draw(canvas)
    for line in lines:
        pix = to_pixels(line, size, box)
        ok = np.isfinite(pix).all(1)
        draw.line([tuple(p) for p in pix[ok]], fill=(150, 150, 200), width=1)
    draw_points(canvas, points, radius=1.2, box=box, colors=colors)
    image.paste(canvas, (0, 34))
    text = ImageDraw.Draw(image)
    for i, part in enumerate(title.split("\n")[:2]):
        text.text((4, 2 + 16 * i), part, fill=(20, 20, 20), font=label_font(13))
    return image


def small_multiples(panels: list[Image.Image], columns: int = 4) -> Image.Image:
    w, h = panels[0].size
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (columns * w + (columns - 1) * 6, rows * h + (rows - 1) * 6),
                      BACKGROUND)
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % columns) * (w + 6), (i // columns) * (h + 6)))
    return sheet
