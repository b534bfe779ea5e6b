"""Programmatic prompt adherence: does a generated image show what its caption asks for?

For a ``Scene`` and an image (64x64 RGB) we read the background (median of the border ring),
find the objects (connected regions that differ from the background), and for each described
object check its colour (nearest palette colour of the region's median), shape (best IoU
against each shape's template fitted to the region's box), size (box extent), and position
(nearest anchor of the region's centroid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from playground.txt2img.shapes import ANCHORS, PALETTE, SHAPES, Scene, shape_polygon

ATTRIBUTES = ("colour", "shape", "size", "position", "background")
FOREGROUND_DISTANCE = 70.0  # RGB distance from the background that counts as an object
MIN_AREA = 10  # pixels; smaller regions are noise
LARGE_EXTENT = 19  # box extent (px) from which an object counts as "large"
_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


@dataclass
class Found:
    colour: str
    shape: str
    size: str
    position: str
    area: int


def nearest_colour(rgb: np.ndarray) -> str:
    return _NAMES[int(np.argmin(((_RGB - rgb) ** 2).sum(-1)))]


def _template(shape: str, h: int, w: int) -> np.ndarray:
    """The shape's polygon stretched to fill an h x w box, as a boolean mask."""
    scale = 8  # draw big, compare at box size
    canvas = Image.new("L", (w * scale, h * scale), 0)
    pts = np.array(shape_polygon(shape, 0, 0, 1.0))
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - lo) / (hi - lo) * [w * scale - 1, h * scale - 1]
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(canvas.resize((w, h), Image.BILINEAR)) > 127


def classify_shape(mask: np.ndarray) -> str:
    """Best IoU between ``mask`` (cropped to its box) and each shape's template."""
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        t = _template(shape, *mask.shape)
        iou = (t & mask).sum() / max(1, (t | mask).sum())
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def find_objects(image: np.ndarray, max_objects: int = 2) -> tuple[str, list[Found]]:
    """Background colour name and the largest objects in ``image`` (H, W, 3) uint8."""
    from scipy import ndimage

    img = image.astype(np.float32)
    ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg_rgb = np.median(ring, axis=0)
    background = nearest_colour(bg_rgb)
    fg = np.sqrt(((img - bg_rgb) ** 2).sum(-1)) > FOREGROUND_DISTANCE
    labels, n = ndimage.label(fg)
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[box] == index
        area = int(region.sum())
        if area < MIN_AREA:
            continue
        ys, xs = np.nonzero(labels == index)
        colour = nearest_colour(np.median(img[ys, xs], axis=0))
        centre = np.array([xs.mean(), ys.mean()])
        position = min(ANCHORS, key=lambda p: np.linalg.norm(centre - ANCHORS[p]))
        extent = max(region.shape)
        found.append(Found(colour, classify_shape(region), "large" if extent >= LARGE_EXTENT
                           else "small", position, area))
    found.sort(key=lambda f: -f.area)
    return background, found[:max_objects]


def check(scene: Scene, image) -> dict[str, bool]:
    """Per attribute: is it right for every described object? Plus "colour+shape" and "all"."""
    image = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    background, found = find_objects(image, max_objects=len(scene.objects) + 1)
    result = {a: True for a in ATTRIBUTES}
    result["background"] = background == scene.background
    remaining = list(found)
    for obj in scene.objects:
        if not remaining:
            for a in ("colour", "shape", "size", "position"):
                result[a] = False
            continue
        # the region nearest the described position stands for this object
        anchor = np.array(ANCHORS[obj.position])
        match = min(remaining, key=lambda f: np.linalg.norm(np.array(ANCHORS[f.position]) - anchor)
                    - 1e-3 * f.area)
        remaining.remove(match)
        for a in ("colour", "shape", "size", "position"):
            result[a] = result[a] and getattr(match, a) == getattr(obj, a)
    result["colour+shape"] = result["colour"] and result["shape"]
    result["all"] = all(result[a] for a in ATTRIBUTES)
    return result


def score(scenes: list[Scene], images: list) -> dict[str, float]:
    """Fraction of images passing each check (colour, shape, ..., colour+shape, all)."""
    rows = [check(s, im) for s, im in zip(scenes, images, strict=True)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
