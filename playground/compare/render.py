"""Pictures of the Compare tab with PIL and numpy (the Flows tab's helpers): one panel per family
(samples over the exact density where the family has one), and the how-it-works views."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from playground.core.fonts import label_font
from playground.core.plot2d import (
    colormap,
    density_image,
    draw_points,
    scatter_image,
    small_multiples,
)

PANEL = 260
DATA_COLOR = (170, 170, 170)


def panel_image(title: str, samples: np.ndarray, logq: np.ndarray | None = None,
                data: np.ndarray | None = None, size: int = PANEL) -> Image.Image:
    """Samples (red) over the density heatmap (flow, AR) or over faint held-out data (grey)."""
    if logq is not None:
        image = density_image(logq, size)
        draw_points(image, samples, color=(255, 255, 255), radius=1.2)
    else:
        image = scatter_image(np.zeros((0, 2)), size)
        if data is not None:
            draw_points(image, data, color=DATA_COLOR, radius=1.0)
        draw_points(image, samples, radius=1.3)
    return titled(image, title)


def titled(image: Image.Image, title: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + 22), (255, 255, 255))
    out.paste(image, (0, 22))
    ImageDraw.Draw(out).text((4, 3), title, fill=(20, 20, 20), font=label_font(14))
    return out


def heatmap(values: np.ndarray, size: int = PANEL) -> Image.Image:
    """(R, R) values in [0, 1] (row 0 = top) as a viridis picture."""
    return Image.fromarray(colormap(values), "RGB").resize((size, size),
                                                            Image.Resampling.BILINEAR)


def curve_image(xs: np.ndarray, curves: list[tuple[np.ndarray, tuple]], title: str,
                width: int = 360, height: int = 200, marker: float | None = None) -> Image.Image:
    """Line plot of one or more (ys, colour) curves over ``xs``, y from 0 to the max."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    top = max(float(np.nanmax(ys)) for ys, _ in curves) or 1.0
    px = (xs - xs.min()) / (xs.max() - xs.min()) * (width - 10) + 5
    for ys, color in curves:
        py = height - 10 - ys / top * (height - 40)
        draw.line(list(zip(px.tolist(), py.tolist(), strict=True)), fill=color, width=2)
    if marker is not None:
        mx = (marker - xs.min()) / (xs.max() - xs.min()) * (width - 10) + 5
        draw.line([(mx, 25), (mx, height - 10)], fill=(200, 60, 40))
    draw.line([(5, height - 10), (width - 5, height - 10)], fill=(120, 120, 120))
    draw.text((6, 4), title, fill=(20, 20, 20), font=label_font(13))
    return image


def strip(panels: list[Image.Image], columns: int | None = None) -> Image.Image:
    return small_multiples(panels, columns=columns or len(panels))
