"""Uploaded files, checked before anything is decoded: size on disk, then the image header.

Every image input of the app goes through ``open_image``: the pixel budget is checked from the
header (PIL reads only that on ``open``), so a 13000×13000 PNG of 20 kB is refused in
milliseconds instead of costing gigabytes; every refusal says what was wrong with the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from playground.core.errors import UserInputError

MAX_UPLOAD_MB = 20
MAX_PIXELS = 16_000_000  # 16 MP (e.g. 4000×4000): about 64 MB decoded as RGBA
READABLE = "PNG, JPEG, BMP, GIF, WebP or TIFF"


def check_file(path: str | Path | None, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """The upload's path, refused if missing, empty or larger than ``max_mb`` on disk."""
    if not path:
        raise UserInputError("No file was uploaded.")
    path = Path(path)
    if not path.is_file():
        raise UserInputError("The uploaded file could not be found on the server; upload it "
                             "again.")
    size = path.stat().st_size
    if size == 0:
        raise UserInputError(f"'{path.name[:60]}' is empty (0 bytes).")
    if size > max_mb * 2**20:
        raise UserInputError(f"The upload is too big ({size / 2**20:.1f} MB); the limit is "
                             f"{max_mb:g} MB.")
    return path


def open_image(path: str | Path | None, *, max_pixels: int = MAX_PIXELS, min_side: int = 1,
               max_mb: float = MAX_UPLOAD_MB, what: str = "image") -> Image.Image:
    """Open an uploaded image lazily (header only) after checking its size and pixel count.

    Returns the PIL image, not yet decoded (call ``.load()`` or convert it).
    Raises UserInputError naming the limit or the problem: not an image, a truncated or
    corrupt file, too many pixels, too small.
    """
    path = check_file(path, max_mb)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise UserInputError(f"The {what} is far too large in pixels (PIL refuses to open it "
                             f"as a decompression bomb); the limit is "
                             f"{max_pixels / 1e6:.0f} megapixels.") from None
    except UnidentifiedImageError:
        raise UserInputError(f"'{path.name[:60]}' is not an image this app can read "
                             f"({READABLE}).") from None
    except OSError as exc:
        raise UserInputError(f"'{path.name[:60]}' could not be read as an image: "
                             f"{str(exc)[:120]}.") from None
    w, h = image.size
    if w * h > max_pixels:
        raise UserInputError(f"The {what} is {w}×{h} = {w * h / 1e6:.1f} megapixels; the limit "
                             f"is {max_pixels / 1e6:.0f} megapixels. Upload a smaller one.")
    if min(w, h) < min_side:
        raise UserInputError(f"The {what} is only {w}×{h} pixels; it needs at least "
                             f"{min_side}×{min_side}.")
    return image


def load_image(path: str | Path | None, **limits) -> Image.Image:
    """``open_image`` then decode, turning a truncated or corrupt body into a clear message."""
    image = open_image(path, **limits)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        name = Path(str(path)).name[:60]
        raise UserInputError(f"'{name}' is damaged or truncated and could not be decoded "
                             f"({str(exc)[:100]}).") from None
    return image


def file_size_mb(path: str | Path) -> float:
    return os.path.getsize(path) / 2**20
