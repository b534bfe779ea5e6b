"""Picture quality beside adherence: is the background clean where the caption names it?

Four measures per image (64x64 RGB) of a ``Scene``, each 0 on the dataset's own renders:

- ``tint``: RGB distance (0-255 per channel, Euclidean) between the mean colour of the interior
  background and the named background colour ("a black background" drawn dark teal);
- ``frame``: the largest RGB distance between the mean colour of one border ring (depth 0 to
  ``BORDER - 1`` px from the edge, background pixels only) and the interior background (a
  visible frame a few pixels in from the edge);
- ``halo``: the largest RGB distance, over the objects, between the mean colour of the ring
  ``HALO_RING`` px outside the object and the interior background (a light or dark ring);
- ``ghost``: stray paint: the departure from the background (RGB distance less
  ``GHOST_FLOOR``) summed over the interior pixels outside every object's box (its core's
  bounding box grown by ``BOX_MARGIN`` px), over the departure summed over the objects' cores
  (0 for a clean picture; 1 = as much stray paint as object): a pale blob beside an object,
  whatever its colour (the frame band is ``frame``'s).

Objects are found by colour: the "object-coloured mass" of a pixel p for an object of colour
o is its position on the line from the measured background b to o, ``t = (p - b)·(o - b) /
|o - b|²`` clipped to [0, 1], times ``1 - d / OFF_LINE`` (d: p's distance from b + t (o - b);
other colours are not this object's mass), set to 0 below ``MASS_FLOOR`` (decoder noise). An
object's core is its largest connected region of mass > 0.5; an object with no core gets its
nominal box (anchor ± size + jitter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from playground.txt2img.shapes import ANCHORS, JITTER, PALETTE, SIZES, Scene

BORDER = 8  # px: the rings at depth 0..7 are the frame band; the interior lies deeper
HALO_RING = (2, 4)  # px outside the object's core (inclusive): the halo ring
BOX_MARGIN = 3  # px: an object's box is its core's bounding box grown by this much
MASS_FLOOR = 0.15  # object-coloured mass below this counts as none
OFF_LINE = 60.0  # RGB distance from the background-to-colour line at which mass fades to 0
CORE = 0.5  # mass above which a pixel belongs to an object's core
GHOST_FLOOR = 10.0  # RGB distance from the background that counts as no paint at all
MEASURES = ("tint", "frame", "halo", "ghost")


@dataclass(frozen=True)
class Artefacts:
    """Per-image measures (or, in ``THRESHOLDS``, the largest value that still passes).

    tint, frame, halo: RGB distances on the 0-255 scale; ghost: a ratio (0 = none)."""
    tint: float
    frame: float
    halo: float
    ghost: float

    def passes(self, limits: Artefacts | None = None) -> dict[str, bool]:
        limits = limits or THRESHOLDS
        return {m: getattr(self, m) <= getattr(limits, m) for m in MEASURES}


# Chosen by what shows (research/txt2img/LOG-second-model.md, "The VAE"): the dataset's renders
# score 0 on all four; the "large red circle on black" from the shipped model (tint
# 13-15, frame 11-13, halo 14-31 over 8 seeds) trips tint, frame and halo; a pale blob beside
# a missed small red star scores ghost 0.06.
THRESHOLDS = Artefacts(tint=8.0, frame=8.0, halo=12.0, ghost=0.05)


@dataclass(frozen=True)
class ArtefactSummary:
    """Means of each measure over a set of images, and the share of images passing each
    threshold (``pass_*``) and all four (``clean``)."""
    n: int
    tint: float
    frame: float
    halo: float
    ghost: float
    pass_tint: float
    pass_frame: float
    pass_halo: float
    pass_ghost: float
    clean: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _depth(size: int) -> np.ndarray:
    """(size, size) distance in pixels from the nearest image edge (0 on the edge)."""
    r = np.arange(size)
    edge = np.minimum(r, size - 1 - r)
    return np.minimum(edge[:, None], edge[None, :])


def object_mass(img: np.ndarray, colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W) object-coloured mass of ``img`` (H, W, 3) float for ``colour`` on ``background``:
    the position along the background-to-colour line, faded out with the distance from it (so
    another object's colour, off the line, is not this one's mass)."""
    axis = colour - background
    mass = np.clip((img - background) @ axis / max(float(axis @ axis), 1.0), 0.0, 1.0)
    off_line = np.linalg.norm(img - background - mass[..., None] * axis, axis=-1)
    mass = mass * np.clip(1.0 - off_line / OFF_LINE, 0.0, 1.0)
    return np.where(mass >= MASS_FLOOR, mass, 0.0)


def _largest_region(mask: np.ndarray, taken: np.ndarray) -> np.ndarray | None:
    from scipy import ndimage

    labels, n = ndimage.label(mask & ~taken)
    if n == 0:
        return None
    sizes = ndimage.sum(mask, labels, index=range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def _nominal_box(obj, size: int) -> tuple[int, int, int, int]:
    scale = size / 64
    cx, cy = (c * scale for c in ANCHORS[obj.position])
    half = (SIZES[obj.size][1] + JITTER) * scale
    return (int(cy - half), int(cy + half) + 1, int(cx - half), int(cx + half) + 1)


def _box_mask(box: tuple[int, int, int, int], size: int, margin: int) -> np.ndarray:
    y0, y1, x0, x1 = box
    mask = np.zeros((size, size), dtype=bool)
    mask[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = True
    return mask


def _cores(img: np.ndarray, scene: Scene, background: np.ndarray):
    """Per object: its core mask (or None) and its dilated box mask."""
    size = img.shape[0]
    taken = np.zeros(img.shape[:2], dtype=bool)
    out = []
    for obj in scene.objects:
        mass = object_mass(img, np.array(PALETTE[obj.colour], np.float32), background)
        core = _largest_region(mass > CORE, taken)
        if core is None:
            box = _nominal_box(obj, size)
        else:
            taken |= core
            ys, xs = np.nonzero(core)
            box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        out.append((core, _box_mask(box, size, BOX_MARGIN)))
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()))


def _union(cores, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, cores): the union of the objects' boxes and of their cores, (size, size) bool."""
    boxes = np.zeros((size, size), dtype=bool)
    found = np.zeros((size, size), dtype=bool)
    for core, box in cores:
        boxes |= box
        if core is not None:
            found |= core
    return boxes, found


def _halo(img: np.ndarray, cores, all_cores: np.ndarray, bg_mean: np.ndarray) -> float:
    from scipy import ndimage

    halo = 0.0
    for core, _ in cores:
        if core is not None:
            dist = ndimage.distance_transform_edt(~core)
            ring = (dist >= HALO_RING[0]) & (dist <= HALO_RING[1]) & ~all_cores
            if ring.any():
                halo = max(halo, _distance(img[ring].mean(0), bg_mean))
    return halo


def measure(scene: Scene, image) -> Artefacts:
    """The four measures of ``image`` (PIL or (H, W, 3) uint8, square) for ``scene``."""
    img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image,
                     dtype=np.float32)
    size = img.shape[0]
    named = np.array(PALETTE[scene.background], np.float32)
    depth = _depth(size)
    # first pass, the named background as reference: where the background is
    boxes, _ = _union(_cores(img, scene, named), size)
    background = ~boxes
    interior = background & (depth >= BORDER)
    if interior.sum() < 16:  # large objects cover the interior: use every background pixel
        interior = background
    bg_mean = img[interior].mean(0) if interior.any() else named
    rings = [background & (depth == d) for d in range(BORDER)]
    frame = max((_distance(img[r].mean(0), bg_mean) for r in rings if r.sum() >= 8),
                default=0.0)
    # second pass, the measured background as reference: the objects, their halo and ghost
    cores = _cores(img, scene, bg_mean)
    boxes, all_cores = _union(cores, size)
    departure = np.linalg.norm(img - bg_mean, axis=-1)  # (H, W) RGB distance
    stray = np.clip(departure - GHOST_FLOOR, 0, None)[~boxes & (depth >= BORDER)].sum()
    drawn = departure[all_cores].sum()
    return Artefacts(tint=_distance(bg_mean, named), frame=frame,
                     halo=_halo(img, cores, all_cores, bg_mean),
                     ghost=float(stray / drawn) if drawn > 0 else 0.0)


def summarise(results: list[Artefacts], limits: Artefacts | None = None) -> ArtefactSummary:
    """Means and pass rates of per-image ``results``."""
    if not results:
        raise ValueError("no images to summarise")
    passes = [r.passes(limits) for r in results]
    means = {m: float(np.mean([getattr(r, m) for r in results])) for m in MEASURES}
    rates = {f"pass_{m}": float(np.mean([p[m] for p in passes])) for m in MEASURES}
    clean = float(np.mean([all(p.values()) for p in passes]))
    return ArtefactSummary(n=len(results), **means, **rates, clean=clean)


def score(scenes: list[Scene], images: list, limits: Artefacts | None = None) -> ArtefactSummary:
    """``summarise`` of ``measure`` over paired scenes and images."""
    return summarise([measure(s, im) for s, im in zip(scenes, images, strict=True)], limits)
