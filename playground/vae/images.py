"""Uploads as the model sees them, and results drawn: previews, strips, GIFs, error maps.

Uploads may be anything: a 1×1 pixel, a 50-megapixel photo, RGBA/CMYK/16-bit PNGs or not an
image at all. ``read_upload`` lets ``playground.core.uploads`` check the file size and the pixel
count from the header before anything is decoded, then converts to what the model sees (grey
or RGB, centre square crop, model size). No gradio here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from playground.data.faces import MIN_PHOTO_SIDE, read_face_photo

MIN_SIDE = MIN_PHOTO_SIDE  # px; smaller images carry no face
DISPLAY_SCALE = 2


def read_upload(path: str | Path, size: int, channels: int) -> np.ndarray:
    """An uploaded image as the model sees it: (size, size) grey or (size, size, 3) RGB in [0, 1]
    (``data.faces.read_face_photo``, shared with the GAN's "find this face")."""
    return read_face_photo(path, size, channels)


def pixels_hash(array: np.ndarray) -> str:
    """Short sha256 of the pixels the model saw (for the reproducibility record)."""
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(S, S) or (S, S, 3) in [0, 1] → (1, C, S, S)."""
    t = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def to_pil(image: torch.Tensor, scale: int = DISPLAY_SCALE) -> Image.Image:
    """(C, S, S) in [0, 1] → PIL (grey or RGB), upscaled ``scale``× (nearest) for display."""
    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil


def strip_image(images: torch.Tensor, columns: int | None = None, gap: int = 2) -> Image.Image:
    """(B, C, S, S) in [0, 1] → one PIL image: a row (or grid) with white gaps."""
    b, c, s, _ = images.shape
    columns = columns or b
    rows = (b + columns - 1) // columns
    canvas = torch.ones(c, rows * (s + gap) - gap, columns * (s + gap) - gap)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        canvas[:, r * (s + gap): r * (s + gap) + s, col * (s + gap): col * (s + gap) + s] = img
    return to_pil(canvas, scale=1)


def error_map(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Absolute error as a heat map (3, S, S): black = exact, red → yellow → white = large.

    The colour scale is fixed (0.25 = full white) so maps of different faces compare.
    """
    err = (x - recon).abs().mean(0).clamp(0, 0.25) / 0.25  # (S, S) in [0, 1]
    return torch.stack([(err * 3).clamp(0, 1), (err * 3 - 1).clamp(0, 1),
                        (err * 3 - 2).clamp(0, 1)])


def as_rgb(image: torch.Tensor) -> torch.Tensor:
    """(1 or 3, S, S) → (3, S, S)."""
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def write_gif(frames: list[Image.Image], frame_ms: int, path: str | Path,
              bounce: bool = True) -> str:
    """Animated GIF at ``path`` (there and back if ``bounce``); returns the path."""
    seq = frames + frames[-2:0:-1] if bounce and len(frames) > 2 else list(frames)
    seq[0].save(path, format="GIF", save_all=True, append_images=seq[1:], duration=frame_ms,
                loop=0)
    return str(path)
