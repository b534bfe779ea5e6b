"""Inside the VAE: a 2-D map of every face's code, and the face at any point of it (no gradio).

The map: every face (training and held-out people) is encoded to its posterior mean mu(x)
(N, D); the PCA of these codes (``playground.vae.pca``) gives the two directions along which
the codes vary most, and a face's map position is the projection of its code,
``(mu - centre) @ components.T``. A point (PC1, PC2) of the map decodes one of two ways:

* ``"map point"`` (the default): the inverse PCA, ``centre + PC1 v1 + PC2 v2``, every other
  direction at the mean of the codes. This is the code *at that point of the map*: it shows
  what the two axes alone carry. PC1 and PC2 hold only part of the codes' variance, so these
  faces are smoother and more average than any real one.
* ``"nearest face"``: the full code of the face whose map position is nearest the point (on the
  map, where distances are what the picture shows); it decodes to that face's reconstruction.

Either way the nearest face's reconstruction and photo are shown beside the decoded code, so
the difference between the two is what the other D - 2 directions hold. The maps of the last
few models are kept (encoding 400 faces is the slow part); the same model and faces always
give the same map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from playground.core import registry, repro
from playground.core.errors import UserInputError, check_range
from playground.core.memo import BoundedMemo
from playground.core.registry import ModelEntry
from playground.data.faces import FACES_ENV, faces_source
from playground.vae import FAMILY
from playground.vae.codec import Codec, load_codec
from playground.vae.images import as_rgb, pixels_hash, strip_image
from playground.vae.inference import (
    adapt_face,
    display_scale,
    encode_faces,
    output_path,
    request_record,
    scaled_for_display,
)
from playground.vae.pca import PCAFit, fit_pca
from playground.vae.render_map import MapFrame, draw_map, frame_for
from playground.vae.split import cached_split

MAP_CODES = ("map point", "nearest face")
MAP_CACHE = 4  # models whose maps are kept
MIN_MAP_FACES = 3
REACH = 4.0  # a map point may lie this many times the farthest face's distance out


@dataclass
class MapFaces:
    """The faces on the map, in map order (training people first)."""

    images: np.ndarray  # (N, 64, 64) float32 in [0, 1]
    persons: np.ndarray  # (N,) person ids
    held_out: np.ndarray  # (N,) bool: a person the shipped split held out of training
    labels: list[str]  # "person 3 · photo 0" (the held-out ones as in the face pickers)


@dataclass
class LatentMap:
    """Every face's code, their PCA and where each face sits on the map."""

    faces: MapFaces
    codes: torch.Tensor  # (N, D) posterior means, float64
    fit: PCAFit  # two directions
    coords: torch.Tensor  # (N, 2) = fit.project(codes)
    frame: MapFrame  # the picture's pixels ↔ map points
    note: str  # which faces are mapped, and why
    faces_hash: str  # of the mapped faces' pixels (for the records)

    @property
    def reach(self) -> float:
        """The largest |PC1| or |PC2| a request may ask for."""
        return math.ceil(REACH * float(self.coords.abs().max()) * 10 + 1) / 10

    def nearest(self, point: torch.Tensor) -> tuple[int, float]:
        """(index, distance on the map) of the face nearest ``point`` (2,)."""
        distances = (self.coords - point.double()).norm(dim=1)
        index = int(distances.argmin())
        return index, float(distances[index])


@dataclass
class MapView:
    """The map request's answer."""

    image_png: str  # the picture, with the reproducibility record
    explained: tuple[float, float]  # share of the codes' variance along PC1, PC2
    n_faces: int
    n_held_out: int
    note: str
    record: dict

    @property
    def summary(self) -> str:
        pc1, pc2 = self.explained
        return (f"{self.note} PC1 explains **{pc1:.1%}** of the codes' variance and PC2 "
                f"**{pc2:.1%}** (together {pc1 + pc2:.1%}); the rest lies along directions "
                "the map does not show. Click a point to decode the code there.")


@dataclass
class MapDecode:
    """The decode-a-map-point request's answer."""

    image_png: str  # decoded | nearest face's reconstruction | its photo, with the record
    decoded: torch.Tensor  # (C, S, S) in [0, 1]
    point: tuple[float, float]  # (PC1, PC2)
    code: str  # "map point" or "nearest face"
    nearest: str  # the nearest face's label
    nearest_held_out: bool
    distance: float  # from the point to the nearest face, on the map
    record: dict

    @property
    def summary(self) -> str:
        pc1, pc2 = self.point
        what = ("the map point's code (inverse PCA: every other direction at the mean)"
                if self.code == "map point" else "the nearest face's full code")
        group = "held-out person" if self.nearest_held_out else "training person"
        return (f"({pc1:g}, {pc2:g}) decoded from {what}. Nearest face: **{self.nearest}** "
                f"({group}), {self.distance:.3g} away on the map. Left: decoded; middle: the "
                "nearest face's reconstruction (its full code); right: its photo.")


# ---- the map -------------------------------------------------------------------------------

def map_faces(codec: Codec) -> tuple[MapFaces, str]:
    """The faces to map and a note saying which: all of them for our ConvVAE; the held-out
    people only for an AutoencoderKL (a large model encodes at 256 px; it saw none of them)."""
    source = faces_source()
    if source is None:
        raise UserInputError("The face map needs the face photos, which are not on this "
                             "machine (assets/olivetti_faces.npz is missing, or "
                             f"{FACES_ENV} points to nothing).")
    train, val = cached_split(str(source))
    parts = [(train, False), (val, True)] if codec.kind == "conv" else [(val, True)]
    images, persons, held, labels = [], [], [], []
    for part, is_held in parts:
        seen: dict[int, int] = {}
        for image, person in zip(part.images, part.persons, strict=True):
            seen[int(person)] = seen.get(int(person), -1) + 1
            labels.append(f"person {int(person)} · photo {seen[int(person)]}")
            images.append(image)
            persons.append(int(person))
            held.append(is_held)
    faces = MapFaces(np.asarray(images, np.float32).reshape(-1, 64, 64),
                     np.asarray(persons, np.int64), np.asarray(held, bool), labels)
    n, n_held = len(labels), int(faces.held_out.sum())
    if codec.kind == "conv":
        note = (f"Posterior means of all {n} faces: {n - n_held} of the training people and "
                f"{n_held} of the held-out people (outlined).")
    else:
        note = (f"Posterior means of the {n} faces of the held-out people only (this "
                "AutoencoderKL saw none of these people; encoding all 400 photos at "
                f"{codec.size} px would keep the request long).")
    return faces, note


def build_latent_map(codec: Codec) -> LatentMap:
    """Encode the faces, fit the PCA, place every face (see the module docstring)."""
    if codec.latent_dim < 2:
        raise UserInputError("This model's code has a single number: a 2-D map needs two.")
    faces, note = map_faces(codec)
    if len(faces.labels) < MIN_MAP_FACES:
        raise UserInputError(f"The face map needs at least {MIN_MAP_FACES} faces; the face "
                             f"data holds {len(faces.labels)}.")
    codes = encode_faces(codec, faces.images).double()  # (N, D)
    fit = fit_pca(codes, 2)
    coords = fit.project(codes)  # (N, 2)
    return LatentMap(faces, codes, fit, coords, frame_for(coords.numpy()), note,
                     pixels_hash(faces.images))


_MAPS: BoundedMemo[LatentMap] = BoundedMemo(MAP_CACHE)


def latent_map(entry: ModelEntry, codec: Codec | None = None) -> LatentMap:
    """The map of a model (and of the current face data), built once and kept."""
    return _MAPS.get((entry.name, entry.source, str(faces_source())),
                     lambda: build_latent_map(codec or load_codec(entry)))


# ---- requests ------------------------------------------------------------------------------

def map_view(model_name: str) -> MapView:
    """The map of every face's code as a PNG, with the explained variance of PC1 and PC2."""
    entry = registry.resolve(FAMILY, model_name)
    found = latent_map(entry)
    explained = tuple(float(e) for e in found.fit.explained)
    origin = tuple(float(v) for v in found.fit.project(torch.zeros(1, found.codes.shape[1]))[0])
    image = draw_map(found.coords.numpy(), found.faces.persons, found.faces.held_out,
                     explained, found.frame, "Each face's code, on its first two principal "
                     "components", origin)
    n_held = int(found.faces.held_out.sum())
    record = request_record(entry, {
        "view": "latent map (PCA of the posterior means)", "faces": len(found.faces.labels),
        "held_out_faces": n_held, "faces_hash": found.faces_hash,
        "explained_variance": [round(e, 6) for e in explained]}, None)
    path = repro.save_png(image, record, output_path("latent-map"))
    return MapView(str(path), explained, len(found.faces.labels), n_held, found.note, record)


def map_point_at_pixel(model_name: str, pixel) -> tuple[float, float]:
    """The map point (PC1, PC2) drawn at ``pixel`` = (column, row) of the model's map picture
    (a click's ``SelectData.index``), rounded to 4 decimals (what the tab shows and the
    record keeps)."""
    if not isinstance(pixel, (list, tuple)) or len(pixel) != 2:
        raise UserInputError("Click inside the map to pick a point.")
    col = check_range("Column", pixel[0], -1e5, 1e5)
    row = check_range("Row", pixel[1], -1e5, 1e5)
    entry = registry.resolve(FAMILY, model_name)
    pc1, pc2 = latent_map(entry).frame.to_map(col, row)
    return round(pc1, 4), round(pc2, 4)


def decode_map_point(model_name: str, pc1, pc2, code: str = "map point") -> MapDecode:
    """Decode the map point (PC1, PC2) (see the module docstring for ``code``) and show it
    beside the nearest face's reconstruction and photo."""
    if code not in MAP_CODES:
        raise UserInputError(f"Code must be one of {', '.join(MAP_CODES)}; got {code!r}.")
    entry = registry.resolve(FAMILY, model_name)
    codec = load_codec(entry)
    found = latent_map(entry, codec)
    reach = found.reach
    pc1 = check_range("PC1", pc1, -reach, reach)
    pc2 = check_range("PC2", pc2, -reach, reach)
    point = torch.tensor([pc1, pc2], dtype=torch.float64)
    index, distance = found.nearest(point)
    nearest_code = found.codes[index:index + 1]
    z = found.fit.unproject(point[None]) if code == "map point" else nearest_code  # (1, D)
    decoded = codec.decode(torch.cat([z, nearest_code]).float())  # (2, C, S, S)
    photo = adapt_face(found.faces.images[index], codec)[0]
    panel = torch.stack([as_rgb(decoded[0]), as_rgb(decoded[1]), as_rgb(photo)])
    label, held = found.faces.labels[index], bool(found.faces.held_out[index])
    record = request_record(entry, {
        "view": "latent map point", "pc1": pc1, "pc2": pc2, "code": code,
        "nearest_face": label, "map_faces": len(found.faces.labels),
        "faces_hash": found.faces_hash}, None)
    image = scaled_for_display(strip_image(panel, gap=4), display_scale(codec))
    path = repro.save_png(image, record, output_path("latent-map-point"))
    return MapDecode(str(path), decoded[0], (pc1, pc2), code, label, held, distance, record)
