"""The user's own distribution: strokes drawn on a canvas, or an uploaded CSV of x,y points.

Both end up as (N, 2) float tensors inside the plotting box [-4, 4]². Every way a drawing or a
file can be unusable raises a UserInputError that says what to do instead.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from playground.core.errors import UserInputError
from playground.core.uploads import check_file, load_image
from playground.data.targets2d import BOX

SOURCES = ["built-in target", "my drawing", "my CSV"]  # the data choices of the 2-D tabs
MAX_CSV_BYTES = 5 * 1024 * 1024  # ~200k short rows; a 10-million-row file is refused unread
MAX_CSV_ROWS = 100_000
MIN_POINTS = 20
FIT_HALF_WIDTH = 3.5  # uploaded points are rescaled to fit in [-3.5, 3.5]²
MIN_SPAN = 0.04  # a drawing narrower than 4 % of the canvas both ways is "one dot"
# The canvas is 400×400 (800×800 on a high-density screen); 4 MP leaves room for any real
# drawing and refuses, from the PNG header alone, a 20 kB file that would decode to gigabytes.
SKETCH_MAX_PIXELS = 4_000_000
SKETCH_MAX_MB = 10


def _parse_row(line: str, number: int) -> tuple[float, float] | None:
    fields = [f.strip() for f in line.replace(";", ",").replace("\t", ",").split(",")]
    fields = [f for f in fields if f]
    if not fields:
        return None  # blank line
    if len(fields) < 2:
        raise UserInputError(f"CSV row {number} has {len(fields)} value; expected two (x,y).")
    try:
        x, y = float(fields[0]), float(fields[1])
    except ValueError:
        if number == 1:
            return None  # a header such as "x,y"
        raise UserInputError(f"CSV row {number} is not two numbers: "
                             f"{line.strip()[:60]!r}.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise UserInputError(f"CSV row {number} contains NaN or infinity ({line.strip()[:60]!r}); "
                             "every value must be a finite number.")
    return x, y


def read_csv_points(path: str, max_rows: int = MAX_CSV_ROWS,
                    max_bytes: int = MAX_CSV_BYTES) -> np.ndarray:
    """(N, 2) float64 points from a CSV with two numeric columns (an optional header row).

    The size is checked before reading, and reading stops at ``max_rows + 1`` rows.
    """
    if not path or not os.path.isfile(path):
        raise UserInputError("Upload a CSV file of x,y points.")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise UserInputError(f"The CSV is too big ({size / 2**20:.1f} MB); the limit is "
                             f"{max_bytes / 2**20:.0f} MB (about {max_rows:,} rows).")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            row = _parse_row(line, number)
            if row is not None:
                rows.append(row)
            if len(rows) > max_rows:
                raise UserInputError(f"The CSV has more than {max_rows:,} rows; upload a sample "
                                     "of your points.")
    if len(rows) < MIN_POINTS:
        raise UserInputError(f"The CSV has {len(rows)} usable rows; at least {MIN_POINTS} x,y "
                             "points are needed.")
    return np.asarray(rows, dtype=np.float64)


def fit_to_box(points: np.ndarray) -> tuple[torch.Tensor, dict]:
    """Centre the points and scale both axes by one factor so they fill [-3.5, 3.5]².

    Returns (float32 tensor, {"center": [cx, cy], "scale": s}) with box = (data - center) * s.
    """
    lo, hi = points.min(0), points.max(0)
    half = float((hi - lo).max()) / 2
    if not half > 0:
        raise UserInputError("All points are identical; a distribution needs some spread.")
    center = (lo + hi) / 2
    scale = FIT_HALF_WIDTH / half
    fitted = torch.from_numpy((points - center) * scale).float()
    return fitted, {"center": [float(c) for c in center], "scale": scale}


def points_from_csv(path: str) -> torch.Tensor:
    return fit_to_box(read_csv_points(path))[0]


def _sketch_image(value):
    """The picture to read from a Sketchpad/ImageEditor value: the composite, else the first
    layer, else the background; each may be a file path (as the tab receives it), a PIL image
    or an array."""
    if not isinstance(value, dict):
        return value
    layers = value.get("layers") or []
    for image in (value.get("composite"), layers[0] if layers else None,
                  value.get("background")):
        if image is not None:
            return image
    return None


def _open_sketch(path) -> np.ndarray:
    """(H, W, 4) uint8 of a drawing saved as a file, its pixel count checked before decoding."""
    image = load_image(path, max_pixels=SKETCH_MAX_PIXELS, max_mb=SKETCH_MAX_MB,
                       what="drawing")
    with image:
        return np.asarray(image.convert("RGBA"))


def stroke_mask(value) -> np.ndarray:
    """Boolean (H, W) mask of painted pixels from a gr.Sketchpad / ImageEditor value (file
    paths, PIL images or arrays)."""
    image = _sketch_image(value)
    if image is None:
        raise UserInputError("Draw something on the canvas first.")
    if isinstance(image, (str, os.PathLike)):
        image = _open_sketch(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        return arr < 128
    rgb_dark = arr[..., :3].astype(np.int32).mean(-1) < 200
    if arr.shape[-1] == 4:
        return rgb_dark & (arr[..., 3] > 64)
    return rgb_dark


def points_from_sketch(value, n_points: int = 2000, noise: float = 0.08,
                       seed: int = 0) -> torch.Tensor:
    """Turn painted pixels into ``n_points`` points in the box, with a little Gaussian noise.

    The canvas maps onto [-4, 4]² (top-left = (-4, 4)).
    """
    mask = stroke_mask(value)
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise UserInputError("The drawing is empty: paint a few strokes where the points "
                             "should be.")
    h, w = mask.shape
    if np.ptp(rows) < MIN_SPAN * h and np.ptp(cols) < MIN_SPAN * w:
        raise UserInputError("The drawing is a single dot; a flow needs a spread of points. "
                             "Paint a few strokes.")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(rows), (n_points,), generator=gen).numpy()
    x = -BOX + (cols[pick] + 0.5) * (2 * BOX / w)
    y = BOX - (rows[pick] + 0.5) * (2 * BOX / h)
    pts = torch.from_numpy(np.stack([x, y], 1)).float()
    return pts + noise * torch.randn(n_points, 2, generator=gen)


def user_points(source: str, sketch, csv_file, seed: int) -> torch.Tensor | None:
    """The points of the data source a 2-D tab's user chose (Flows, Compare): None for the
    built-in target, else the drawing or the uploaded CSV as (N, 2) points in the box."""
    if source == "my drawing":
        return points_from_sketch(sketch, seed=seed)
    if source == "my CSV":
        if csv_file is None:
            raise UserInputError("Upload a CSV file of x,y points first.")
        path = csv_file if isinstance(csv_file, str) else getattr(csv_file, "name", None)
        check_file(path, MAX_CSV_BYTES / 2**20)  # missing, empty, too big
        return points_from_csv(str(path))
    if source != "built-in target":
        raise UserInputError(f"Data must be one of {', '.join(SOURCES)}, got {source!r}.")
    return None
