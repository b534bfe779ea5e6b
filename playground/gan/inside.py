"""Inside the GAN: edit a face along latent directions, see who it looks like, interpolate
from a found face. The requests the tab and the API serve (no gradio here).

"Who it looks like" answers the question an edit raises: is the direction a real attribute
(pose, light, expression) or just a slide towards one of the 40 people? Under every face we put
its nearest training photo in pixels (as the sampling view does) and name that photo's person;
beside it, the person of the nearest photo in the face-identity features of ``weights/gan-face-id``
(the network behind the tab's metrics), which ignores light and small shifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from playground.core import registry, repro
from playground.core.errors import UserInputError, check_range
from playground.core.latent import slerp
from playground.gan import FACE_ID, FAMILY
from playground.gan.codes import render_codes, start_code
from playground.gan.directions import LatentDirections, edit_latent, latent_directions
from playground.gan.inference import (
    Interpolation,
    _output,
    _record,
    grid_image,
    load_generator,
    to_pil,
    training_faces,
    write_interpolation,
)
from playground.gan.metrics import nearest, pairwise_distances, rms_distance

MAX_STRENGTH = 10.0  # in standard deviations of z along a unit direction
MAX_PICKS = 8
WALK_FRAMES = (3, 9)


# ---- who a face looks like -------------------------------------------------------------------

@dataclass
class Lookalike:
    """The training photo nearest to one face (pixels) and the person nearest in identity."""

    index: int  # the nearest training photo (RMS pixels)
    person: int  # its person
    distance: float  # RMS pixel distance in [0, 1]
    id_person: int | None  # person of the nearest photo in face-id features (None: no net)


def _read_face_id(source: str):
    from playground.gan.faceid import FaceIdNet

    return FaceIdNet.from_pretrained(source).eval()


def face_id_net():
    """The face-identity network of the tab's metrics (cached), or None where it is absent."""
    path = registry.WEIGHTS_DIR / FACE_ID
    if not (path / "config.json").is_file():
        return None
    entry = registry.ModelEntry(FACE_ID, FAMILY, path=path)  # not listed: not a generator
    return registry.load_model(FAMILY, entry, _read_face_id, key="face-id")


@lru_cache(maxsize=2)
def _training_features(source: str) -> np.ndarray:
    from playground.gan.faceid import extract_features

    faces = training_faces(64, source)
    return extract_features(face_id_net(), torch.from_numpy(faces.images)[:, None] * 2 - 1)


def lookalikes(images: torch.Tensor) -> list[Lookalike] | None:
    """For grey faces (B, 1, S, S) in [0, 1]: who each looks like; None for colour faces or
    where the training photos are not on this machine."""
    faces = training_faces(images.shape[-1]) if images.shape[1] == 1 else None
    if faces is None:
        return None
    idx, dist = nearest(images[:, 0].numpy(), faces.images, rms_distance)
    id_people: list[int | None] = [None] * len(images)
    if face_id_net() is not None:
        from playground.data.faces import faces_source
        from playground.gan.faceid import extract_features

        feats = extract_features(face_id_net(), images * 2 - 1)
        id_idx, _ = nearest(feats, _training_features(str(faces_source())), pairwise_distances)
        id_people = [int(faces.persons[i]) for i in id_idx]
    return [Lookalike(int(i), int(faces.persons[i]), float(d), p)
            for i, d, p in zip(idx, dist, id_people, strict=True)]


def _photos(found: list[Lookalike], size: int) -> torch.Tensor:
    """The nearest training photos (B, 1, S, S) in [0, 1]."""
    faces = training_faces(size)
    return torch.from_numpy(faces.images[[f.index for f in found]])[:, None]


def _sheet(rows: list[torch.Tensor], columns: int) -> Image.Image:
    """Rows of images (n_i, C, S, S) in [0, 1], each padded with white to ``columns``, as one
    picture enlarged 2x."""
    cells = []
    for row in rows:
        pad = torch.ones(columns - len(row), *row.shape[1:])
        cells.append(torch.cat([row, pad]))
    grid = grid_image(torch.cat(cells), columns)
    return grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST)


def _with_photos(faces: torch.Tensor, who: list[Lookalike] | None) -> list[torch.Tensor]:
    """A row of faces, and under it the row of their nearest photos (when there are any)."""
    if who is None:
        return [faces]
    return [faces, _photos(who, faces.shape[-1]).expand(-1, faces.shape[1], -1, -1)]


# ---- editing along directions ----------------------------------------------------------------

@dataclass
class DirectionWalk:
    """Faces along one direction alone, from -strength to +strength."""

    index: int  # 1-based, in the method's order
    strength: float
    value: float  # eigenvalue (sefa) or explained variance (pca)
    ratio: float  # share of the total
    strengths: list[float]
    who: list[Lookalike] | None

    @property
    def people(self) -> list[int]:
        return [w.person for w in self.who] if self.who else []

    @property
    def person_changes(self) -> int:
        """How many steps of the walk change the nearest photo's person."""
        people = self.people
        return sum(a != b for a, b in zip(people, people[1:], strict=False))


@dataclass
class DirectionEdit:
    """What ``edit_along_directions`` returns."""

    faces: list[Image.Image]  # the start face and the edited face, upscaled 2x
    who: list[Lookalike] | None  # for those two faces
    walks: list[DirectionWalk]  # one per direction with a non-zero strength
    pair_png: str  # start | edited, nearest photo under each (PNG with the record)
    walk_png: str | None  # a row per direction, nearest photo under each face; None: no walks
    record: dict
    start: str  # "seed 5" or "found 'name'"

    @property
    def person_changed(self) -> bool | None:
        """Does the edit change the nearest photo's person? None without training photos."""
        return None if self.who is None else self.who[0].person != self.who[1].person

    def table(self) -> list[list]:
        """One row per direction: index, value, share, strength, person changes along the walk."""
        return [[w.index, round(w.value, 4), round(w.ratio, 4), w.strength,
                 w.person_changes if w.who else None] for w in self.walks]


def parse_picks(picks, nz: int) -> list[tuple[int, float]]:
    """(index, strength) pairs checked: 1 <= index <= nz, |strength| <= MAX_STRENGTH, each
    direction once. Pairs whose index is empty are ignored."""
    out: list[tuple[int, float]] = []
    for n, pair in enumerate(picks or [], 1):
        try:
            index, strength = pair
        except (TypeError, ValueError):
            raise UserInputError(f"Direction {n}: give (index, strength), got {pair!r}.") from None
        if index is None or index == "":
            continue
        index = check_range(f"Direction {n}'s index", index, 1, nz, integer=True)
        strength = check_range(f"Direction {n}'s strength", strength, -MAX_STRENGTH,
                               MAX_STRENGTH)
        if any(index == i for i, _ in out):
            raise UserInputError(f"Direction {index} is picked twice; give each direction once.")
        out.append((int(index), float(strength)))
    if len(out) > MAX_PICKS:
        raise UserInputError(f"At most {MAX_PICKS} directions at once, got {len(out)}.")
    return out


@lru_cache(maxsize=16)
def _directions(key: tuple, method: str, model) -> LatentDirections:
    return latent_directions(model, method)


def directions_for(entry: registry.ModelEntry, model, method: str) -> LatentDirections:
    """The model's directions, computed once per loaded model and method."""
    return _directions(entry.key, method, model)


def _walk_strengths(strength: float, frames: int) -> list[float]:
    return [round(float(s), 4) for s in torch.linspace(-strength, strength, frames)]


def edit_along_directions(model_name: str, start: str | None = None, seed=0,
                          method: str = "sefa", picks=((1, 3.0),), frames=5) -> DirectionEdit:
    """Move the start face (a seed's latent or a found face) along several directions at once,
    each with its strength; and walk each direction alone from -strength to +strength.

    Args:
        picks: (1-based direction index, strength) pairs; strength in standard deviations of z.
        frames: faces per walk (3-9).
    """
    frames = check_range("Faces per walk", frames, *WALK_FRAMES, integer=True)
    if method not in ("sefa", "pca"):
        raise UserInputError(f"Direction method must be 'sefa' or 'pca', got {str(method)[:40]!r}.")
    entry = registry.resolve(FAMILY, model_name)
    model = load_generator(entry)
    picks = parse_picks(picks, model.nz)
    code = start_code(entry, model.nz, start, seed)
    dirs = directions_for(entry, model, method)
    walked = [(i, s) for i, s in picks if s]
    latents = [code.z, edit_latent(code.z, dirs, picks)] + [
        edit_latent(code.z, dirs, [(i, t)]) for i, s in walked for t in _walk_strengths(s, frames)]
    images = render_codes(model, torch.stack(latents), code.offset)  # (2 + W·frames, C, S, S)
    who = lookalikes(images)  # all faces at once
    walks, walk_rows = [], []
    for n, (index, strength) in enumerate(walked):
        part = slice(2 + n * frames, 2 + (n + 1) * frames)
        along = None if who is None else who[part]
        walks.append(DirectionWalk(index, strength, float(dirs.values[index - 1]),
                                   float(dirs.ratios[index - 1]), _walk_strengths(strength, frames),
                                   along))
        walk_rows += _with_photos(images[part], along)
    pair, who = images[:2], None if who is None else who[:2]
    record = _record(entry, {"method": method, "directions": [list(p) for p in picks],
                             "frames": frames, **code.describe()},
                     seed=code.seed)
    pair_png = repro.save_png(_sheet(_with_photos(pair, who), 2), record,
                              _output("gan-edit", ".png"))
    walk_png = None if not walk_rows else repro.save_png(
        _sheet(walk_rows, frames), record, _output("gan-walks", ".png"))
    return DirectionEdit([to_pil(img) for img in pair], who, walks, str(pair_png),
                         None if walk_png is None else str(walk_png), record, code.label)


# ---- interpolation between codes -------------------------------------------------------------

def interpolate_codes(model_name: str, start_a: str | None, seed_a, start_b: str | None,
                      seed_b, frames=8, mode: str = "spherical", frame_ms=120) -> Interpolation:
    """Faces from code A to code B, each a seed's latent or a found face: z along the great
    circle (or a straight line), a found face's first-layer offset along a straight line."""
    frames = check_range("Frames", frames, 2, 32, integer=True)
    frame_ms = check_range("Frame duration (ms)", frame_ms, 20, 2000, integer=True)
    if mode not in ("linear", "spherical"):
        raise UserInputError(f"Interpolation must be 'linear' or 'spherical', got {mode!r}.")
    entry = registry.resolve(FAMILY, model_name)
    model = load_generator(entry)
    a = start_code(entry, model.nz, start_a, seed_a)
    b = start_code(entry, model.nz, start_b, seed_b)
    ts = [float(t) for t in torch.linspace(0, 1, frames)]
    zs = torch.stack([torch.lerp(a.z, b.z, t) if mode == "linear" else slerp(a.z, b.z, t)
                      for t in ts])
    offsets = None
    if a.offset is not None or b.offset is not None:
        off_a = a.offset if a.offset is not None else torch.zeros_like(b.offset)
        off_b = b.offset if b.offset is not None else torch.zeros_like(a.offset)
        offsets = torch.stack([torch.lerp(off_a, off_b, t) for t in ts])
    images = render_codes(model, zs, offsets)
    record = _record(entry, {"a": a.describe(), "b": b.describe(), "frames": frames,
                             "mode": mode}, seed=None)
    return write_interpolation(images, record, "found", frame_ms)
