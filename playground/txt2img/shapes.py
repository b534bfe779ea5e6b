"""The captioned shapes dataset: coloured shapes on coloured backgrounds, 64x64 RGB.

Every image comes from a ``Scene`` (one or two objects + a background) drawn deterministically
from a seed; its caption is compositional ("a small red circle at the top left on a gray
background"). Some colour+shape pairs never occur in training (``HELD_OUT_PAIRS``), so a test
can ask whether the model composes attributes it only saw apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from playground.core.errors import UserInputError

IMAGE_SIZE = 64
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 40),
    "green": (40, 170, 60), "blue": (40, 80, 225), "purple": (140, 50, 180),
    "white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128),
}
OBJECT_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white")
BACKGROUNDS = ("black", "gray", "white", "blue", "green")
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = {"small": (6, 8), "large": (12, 14)}  # "radius" range in pixels at 64 px
ANCHORS = {"top left": (17, 17), "top right": (47, 17), "bottom left": (17, 47),
           "bottom right": (47, 47), "center": (32, 32)}
CORNERS = ("top left", "top right", "bottom left", "bottom right")
JITTER = 2  # pixels
# colour+shape pairs that never appear in training images (any object, any scene)
HELD_OUT_PAIRS = frozenset({("red", "star"), ("blue", "circle"), ("green", "triangle"),
                            ("yellow", "square"), ("purple", "diamond")})


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    position: str

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str

    @property
    def caption(self) -> str:
        objects = " and ".join(o.phrase() for o in self.objects)
        return f"{objects} on a {self.background} background"

    def has_held_out_pair(self) -> bool:
        return any((o.colour, o.shape) in HELD_OUT_PAIRS for o in self.objects)


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` centred at (cx, cy) with "radius" r (a circle gives 48 points)."""
    if shape == "circle":
        n, radii = 48, [r]
    elif shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    elif shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    elif shape == "triangle":
        n, radii = 3, [r]
    elif shape == "star":
        n, radii = 10, [r, 0.45 * r]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + radii[i % len(radii)] * math.sin(2 * math.pi * i / n),
             cy - radii[i % len(radii)] * math.cos(2 * math.pi * i / n)) for i in range(n)]


def render(scene: Scene, rng: random.Random | None = None) -> Image.Image:
    """Draw ``scene`` (64x64 RGB). ``rng`` jitters positions and sizes; None = exact anchors."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        cx, cy = ANCHORS[obj.position]
        low, high = SIZES[obj.size]
        r = (low + high) / 2
        if rng is not None:
            cx += rng.uniform(-JITTER, JITTER)
            cy += rng.uniform(-JITTER, JITTER)
            r = rng.uniform(low, high)
        draw.polygon(shape_polygon(obj.shape, cx, cy, r), fill=PALETTE[obj.colour])
    return image


def _random_object(rng: random.Random, position: str, background: str,
                   held_out: bool | None) -> Obj:
    """held_out: True = must be a held-out colour+shape pair, False = must not, None = any."""
    while True:
        obj = Obj(rng.choice(SHAPES), rng.choice(OBJECT_COLOURS), rng.choice(list(SIZES)),
                  position)
        pair_held = (obj.colour, obj.shape) in HELD_OUT_PAIRS
        if obj.colour != background and (held_out is None or pair_held == held_out):
            return obj


def random_scene(rng: random.Random, *, two_objects_p: float = 0.35,
                 held_out: bool | None = False) -> Scene:
    """A random scene; training uses held_out=False (no held-out pair anywhere)."""
    background = rng.choice(BACKGROUNDS)
    if rng.random() < two_objects_p:
        positions = rng.sample(CORNERS, 2)
        first = _random_object(rng, positions[0], background, held_out)
        second = _random_object(rng, positions[1], background, False if held_out else held_out)
        return Scene((first, second), background)
    position = rng.choice(list(ANCHORS))
    return Scene((_random_object(rng, position, background, held_out),), background)


def make_dataset(n: int, seed: int, *, two_objects_p: float = 0.35,
                 held_out: bool | None = False) -> tuple[np.ndarray, list[Scene]]:
    """``n`` rendered scenes: uint8 images (n, 64, 64, 3) and their scenes (deterministic)."""
    rng = random.Random(seed)
    scenes = [random_scene(rng, two_objects_p=two_objects_p, held_out=held_out) for _ in range(n)]
    images = np.stack([np.asarray(render(s, rng)) for s in scenes])
    return images, scenes


def eval_scenes(n: int, seed: int = 12345, *, held_out: bool = True,
                two_objects_p: float = 0.0) -> list[Scene]:
    """Evaluation prompts: each holds a held-out colour+shape pair (or none, held_out=False)."""
    rng = random.Random(seed)
    return [random_scene(rng, two_objects_p=two_objects_p, held_out=held_out) for _ in range(n)]


def caption_words() -> list[str]:
    """Every word a caption can contain (the tokenizer keeps the merges these need)."""
    words = {"a", "at", "the", "and", "on", "background", *PALETTE, *SHAPES, *SIZES}
    for position in ANCHORS:
        words.update(position.split())
    return sorted(words)


# --- as training tensors -----------------------------------------------------------------------

def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) -> (N, 3, size, size) by area averaging (unchanged when S == size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def random_batches(n: int, batch: int, seed: int):
    """Endless index batches, reshuffled every epoch (sampling with replacement if n < batch)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        if n < batch:
            yield torch.randint(n, (batch,), generator=gen)
            continue
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            yield order[i:i + batch]


def balanced_batches(in_group: list[bool] | None, batch: int, share: float, seed: int):
    """Endless index batches that hold ``round(share * batch)`` items of the group (e.g. the
    two-object scenes, 35 % of the data) and the rest from outside it; each side is reshuffled
    whenever it runs out, so every item is seen once per pass of its side. Checked at once
    (``UserInputError``), not at the first batch."""
    if in_group is None:
        raise UserInputError("two_object_share needs each training scene's object count.")
    flags = torch.tensor(in_group, dtype=torch.bool)
    sides = [torch.nonzero(flags).flatten(), torch.nonzero(~flags).flatten()]
    take = [round(share * batch)]
    take.append(batch - take[0])
    if any(t and not len(side) for t, side in zip(take, sides, strict=True)):
        raise UserInputError(f"A share of {share} two-object scenes per batch needs both kinds "
                             f"of scene; the data has {len(sides[0])} two-object and "
                             f"{len(sides[1])} one-object scenes.")
    return _balanced(sides, take, seed)


def _balanced(sides: list[torch.Tensor], take: list[int], seed: int):
    gen = torch.Generator().manual_seed(seed)
    orders = [side[torch.randperm(len(side), generator=gen)] for side in sides]
    pos = [0, 0]
    while True:
        parts = []
        for k in (0, 1):
            need = take[k]
            while need:
                if pos[k] >= len(orders[k]):
                    orders[k] = sides[k][torch.randperm(len(sides[k]), generator=gen)]
                    pos[k] = 0
                got = orders[k][pos[k]:pos[k] + need]
                parts.append(got)
                pos[k] += len(got)
                need -= len(got)
        yield torch.cat(parts)


def background_colour(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1, 1): the median colour of the border ring of each image of ``x`` (B, 3, S, S)."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def object_weights(x: torch.Tensor, object_weight: float) -> torch.Tensor:
    """(B, 1, S, S): ``object_weight`` where a pixel of ``x`` (B, 3, S, S) differs from the
    image's border colour (the objects, a small part of each image), 1 on the background."""
    background = background_colour(x)  # (B, 3, 1, 1)
    is_object = (x - background).abs().sum(1, keepdim=True) > 0.3
    return 1 + (object_weight - 1) * is_object.float()


def latent_object_weights(images: torch.Tensor, latent_size: int,
                          object_weight: float) -> torch.Tensor:
    """(N, 1, s, s) loss weights at latent resolution: ``object_weight`` on every latent pixel
    that covers some object pixel of ``images`` (N, 3, S, S), 1 elsewhere."""
    weights = object_weights(images, object_weight)
    return F.adaptive_max_pool2d(weights, latent_size)
