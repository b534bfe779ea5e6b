"""The VAE tab's requests: interpolate, reconstruct, sample, explore (no gradio here).

Faces come from the held-out people of the Olivetti split (whom the model never saw) or from
uploads. A face's code is its posterior mean ``mu(x)``; paths between two codes are straight
(linear) or along the great circle (spherical, ``playground.core.latent.slerp``), optionally
through the mean code 0. Each request resolves its registry entry once and passes it down; each
returns a small dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from playground.core import registry, repro
from playground.core.errors import UserInputError, check_range
from playground.core.latent import slerp
from playground.core.memo import BoundedMemo
from playground.core.registry import ModelEntry
from playground.core.seeding import make_generator, resolve_seed
from playground.core.sessions import unique_output
from playground.data.faces import FACES_ENV, faces_source
from playground.vae import FAMILY
from playground.vae.codec import Codec, load_codec
from playground.vae.images import (
    as_rgb,
    error_map,
    pixels_hash,
    read_upload,
    strip_image,
    to_pil,
    to_tensor,
    write_gif,
)
from playground.vae.likelihood import evaluate_elbo
from playground.vae.pca import fit_pca
from playground.vae.split import cached_split

MAX_FRAMES = 64
MAX_SAMPLES = 64
TEMPERATURE_RANGE = (0.0, 2.0)
N_DIRECTIONS = 6  # sliders in the latent explorer
SLIDER_RANGE = 3.0  # ± standard deviations along each direction
DIRECTIONS_CACHE = 4  # models whose explorer directions are kept


# ---- what the requests return ------------------------------------------------------------

@dataclass
class HeldoutFaces:
    """The held-out people's photos (empty when no face data is on this machine)."""

    labels: list[str]  # "person 3 · photo 0"
    images: np.ndarray  # (N, 64, 64) float32 in [0, 1]


@dataclass
class Face:
    """A face ready to encode and how the reproducibility record names it."""

    x: torch.Tensor  # (1, C, S, S) in [0, 1] at the codec's size and channels
    description: str  # a held-out label or "upload sha256:..."


@dataclass
class Interpolation:
    strip_png: str  # the frames side by side, with the reproducibility record
    gif: str  # animated, there and back
    frames: torch.Tensor  # (frames, C, S, S) in [0, 1]
    steps: np.ndarray  # (frames - 1,) RMS pixel change between consecutive frames
    preview_a: Image.Image  # what the model saw
    preview_b: Image.Image
    mean_strip_png: str | None  # the path through the mean code 0, when asked for
    record: dict

    @property
    def unevenness(self) -> float:
        """Largest frame-to-frame change over the median one (1 = perfectly even)."""
        median = float(sorted(self.steps)[len(self.steps) // 2])
        return float(self.steps.max() / max(median, 1e-9))


@dataclass
class Reconstruction:
    image_png: str  # input | reconstruction | error map, with the record
    mse: float  # pixels in [0, 1]
    bits_per_dim: float | None  # the face's -ELBO (our VAE only)
    record: dict


@dataclass
class Samples:
    images: list[Image.Image]  # shown at 2× for 64 px models
    grid_png: str  # with the record
    seed: int
    record: dict


@dataclass
class LatentDirections:
    center: torch.Tensor  # (D,) mean code of the encoded faces
    directions: torch.Tensor  # (K, D) principal directions
    std: torch.Tensor  # (K,) spread of the codes along each
    description: str


@dataclass
class Exploration:
    image: Image.Image
    info: str


# ---- faces: held-out people and uploads --------------------------------------------------

def heldout_faces() -> HeldoutFaces:
    """The held-out people of the split, labelled "person 3 · photo 0"."""
    source = faces_source()
    if source is None:
        return HeldoutFaces([], np.zeros((0, 64, 64), np.float32))
    _, val = cached_split(str(source))
    labels, seen = [], {}
    for p in val.persons:
        seen[p] = seen.get(p, -1) + 1
        labels.append(f"person {int(p)} · photo {seen[p]}")
    return HeldoutFaces(labels, val.images)


def all_faces() -> np.ndarray:
    """Every face of the data set (N, 64, 64), or an empty array when it is absent."""
    source = faces_source()
    if source is None:
        return np.zeros((0, 64, 64), np.float32)
    train, val = cached_split(str(source))
    return np.concatenate([train.images, val.images])


def adapt_face(face: np.ndarray, codec: Codec) -> torch.Tensor:
    """A 64×64 grey face → (1, C, S, S) at the codec's size and channels."""
    x = to_tensor(face)
    if codec.size != x.shape[-1]:
        x = F.interpolate(x, size=(codec.size, codec.size), mode="bicubic").clamp(0, 1)
    return x.expand(-1, codec.channels, -1, -1)


def encode_faces(codec: Codec, faces: np.ndarray, batch_size: int = 50) -> torch.Tensor:
    """64×64 grey faces (N, 64, 64) → their posterior means (N, D), in batches."""
    return torch.cat([codec.encode(torch.cat([adapt_face(f, codec)
                                              for f in faces[i:i + batch_size]]))[0]
                      for i in range(0, len(faces), batch_size)])


def load_face(codec: Codec, choice: str | None, upload: str | None, which: str) -> Face:
    """The face to encode: an upload if given, else the chosen held-out face."""
    if upload:
        array = read_upload(upload, codec.size, codec.channels)
        return Face(to_tensor(array), f"upload {pixels_hash(array)}")
    faces = heldout_faces()
    if not faces.labels:
        raise UserInputError(f"Face {which}: the held-out faces are not on this machine ("
                             f"assets/olivetti_faces.npz is missing, or {FACES_ENV} points to "
                             "nothing); upload a photo instead.")
    if not choice or choice not in faces.labels:
        raise UserInputError(f"Face {which}: choose a held-out face (e.g. '{faces.labels[0]}') "
                             "or upload a photo.")
    return Face(adapt_face(faces.images[faces.labels.index(choice)], codec), choice)


# ---- latent paths ------------------------------------------------------------------------

def interpolate_latents(za: torch.Tensor, zb: torch.Tensor, frames: int, mode: str,
                        through_mean: bool = False) -> torch.Tensor:
    """``frames`` codes (frames, D) from ``za`` to ``zb`` (inclusive).

    ``through_mean``: straight to the mean code 0 (half the frames), then straight on to zb.
    """
    ts = torch.linspace(0, 1, frames).tolist()
    if through_mean:
        zero = torch.zeros_like(za)
        return torch.stack([torch.lerp(za, zero, 2 * t) if t <= 0.5
                            else torch.lerp(zero, zb, 2 * t - 1) for t in ts])
    if mode == "linear":
        return torch.stack([torch.lerp(za, zb, t) for t in ts])
    return torch.stack([slerp(za, zb, t) for t in ts])


def frame_steps(images: torch.Tensor) -> np.ndarray:
    """RMS pixel change between consecutive frames (frames - 1,)."""
    diff = (images[1:] - images[:-1]).flatten(1)
    return diff.pow(2).mean(1).sqrt().numpy()


# ---- requests ----------------------------------------------------------------------------

def request_record(entry: ModelEntry, params: dict, seed) -> dict:
    """The reproducibility record; a hub model's carries the commit it was loaded at."""
    return repro.make_record(FAMILY, entry.name, entry.source, params, seed,
                             revision=registry.revision(entry))


def output_path(stem: str, suffix: str = ".png") -> Path:
    """A fresh file in the requesting session's output folder (never shared or rewritten)."""
    return unique_output(FAMILY, stem, suffix)


def display_scale(codec: Codec) -> int:
    return 2 if codec.size <= 64 else 1


def scaled_for_display(image, scale: int):
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def interpolate_faces(model_name: str, face_a: str | None = None, face_b: str | None = None,
                      upload_a: str | None = None, upload_b: str | None = None, frames=8,
                      mode: str = "spherical", through_mean: bool = False,
                      frame_ms=150) -> Interpolation:
    """Walk from face A's code to face B's: a strip PNG, an animated GIF, step sizes."""
    frames = check_range("Frames", frames, 2, MAX_FRAMES, integer=True)
    frame_ms = check_range("Frame duration (ms)", frame_ms, 20, 2000, integer=True)
    if mode not in ("linear", "spherical"):
        raise UserInputError(f"Path must be 'linear' or 'spherical', got {mode!r}.")
    entry = registry.resolve(FAMILY, model_name)
    codec = load_codec(entry)
    a = load_face(codec, face_a, upload_a, "A")
    b = load_face(codec, face_b, upload_b, "B")
    mu, _ = codec.encode(torch.cat([a.x, b.x]))  # (2, D)
    images = codec.decode(interpolate_latents(mu[0], mu[1], frames, mode))
    record = request_record(entry, {"face_a": a.description, "face_b": b.description,
                                    "frames": frames, "mode": mode, "code": "posterior mean"},
                            None)
    scale = display_scale(codec)
    strip = repro.save_png(scaled_for_display(strip_image(images), scale), record,
                           output_path("interpolation"))
    gif = write_gif([to_pil(img, scale) for img in images], frame_ms,
                    output_path("interpolation", ".gif"))
    mean_strip = None
    if through_mean:
        via = codec.decode(interpolate_latents(mu[0], mu[1], frames, mode, through_mean=True))
        mean_record = {**record, "params": {**record["params"], "mode": "through the mean code 0"}}
        mean_strip = str(repro.save_png(scaled_for_display(strip_image(via), scale),
                                        mean_record, output_path("interpolation-via-mean")))
    return Interpolation(str(strip), gif, images, frame_steps(images), to_pil(a.x[0], scale),
                         to_pil(b.x[0], scale), mean_strip, record)


def reconstruct_face(model_name: str, face: str | None = None, upload: str | None = None
                     ) -> Reconstruction:
    """Input | reconstruction (decoder mean at the posterior mean) | absolute error map."""
    entry = registry.resolve(FAMILY, model_name)
    codec = load_codec(entry)
    chosen = load_face(codec, face, upload, "")
    x = chosen.x
    mu, _ = codec.encode(x)
    recon = codec.decode(mu)
    mse = float(((recon - x) ** 2).mean())
    bpd = None
    if codec.kind == "conv":
        bpd = evaluate_elbo(codec.model, x, samples=8, seed=0)["bits_per_dim"]
    panel = torch.stack([as_rgb(x[0]), as_rgb(recon[0]), error_map(x[0], recon[0])])
    record = request_record(entry, {"face": chosen.description, "mse": round(mse, 6),
                                    "bits_per_dim": bpd}, None)
    image = scaled_for_display(strip_image(panel, gap=4), display_scale(codec))
    path = repro.save_png(image, record, output_path("reconstruction"))
    return Reconstruction(str(path), mse, bpd, record)


def sample_faces(model_name: str, seed=0, randomize: bool = False, n=8,
                 temperature=1.0) -> Samples:
    """Decode ``n`` codes z = temperature × N(0, I) drawn from ``seed``.

    Temperature 0 gives the face of the mean code, for every sample.
    """
    n = check_range("Number of samples", n, 1, MAX_SAMPLES, integer=True)
    temperature = check_range("Temperature", temperature, *TEMPERATURE_RANGE)
    seed = resolve_seed(seed, randomize)
    entry = registry.resolve(FAMILY, model_name)
    codec = load_codec(entry)
    z = torch.randn(n, codec.latent_dim, generator=make_generator(seed)) * temperature
    images = codec.decode(z)
    record = request_record(entry, {"n": n, "temperature": temperature}, seed)
    grid = repro.save_png(strip_image(images, columns=min(8, n)), record,
                          output_path(f"samples-seed{seed}"))
    scale = display_scale(codec)
    return Samples([to_pil(img, scale) for img in images], str(grid), seed, record)


# ---- latent explorer ---------------------------------------------------------------------

_DIRECTIONS: BoundedMemo[LatentDirections] = BoundedMemo(DIRECTIONS_CACHE)


def _pca_directions(codec: Codec) -> LatentDirections:
    faces = all_faces() if codec.kind == "conv" else heldout_faces().images
    if len(faces) < N_DIRECTIONS + 1:
        d = codec.latent_dim
        return LatentDirections(torch.zeros(d), torch.eye(d)[:N_DIRECTIONS],
                                torch.ones(N_DIRECTIONS),
                                "latent axes (no face data on this machine for PCA)")
    mus = encode_faces(codec, faces)  # (N, D)
    fit = fit_pca(mus, min(N_DIRECTIONS, codec.latent_dim))
    share = float(fit.explained.sum())
    return LatentDirections(fit.center.float(), fit.components.float(), fit.std.float(),
                            f"PCA of {len(mus)} encoded faces; the {len(fit.explained)} "
                            f"directions explain {share:.0%} of their variance")


def latent_directions(entry: ModelEntry, codec: Codec | None = None) -> LatentDirections:
    """The explorer's directions for a model, computed once per model and kept."""
    return _DIRECTIONS.get((entry.name, entry.source),
                           lambda: _pca_directions(codec or load_codec(entry)))


def explore(model_name: str, *coefficients) -> Exploration:
    """Decode centre + Σ c_k · std_k · direction_k; each c_k in ±SLIDER_RANGE std units."""
    if len(coefficients) > N_DIRECTIONS:
        raise UserInputError(f"At most {N_DIRECTIONS} directions.")
    cs = [check_range(f"Direction {k + 1}", c, -SLIDER_RANGE, SLIDER_RANGE)
          for k, c in enumerate(coefficients)]
    entry = registry.resolve(FAMILY, model_name)
    codec = load_codec(entry)
    found = latent_directions(entry, codec)
    z = found.center.clone()
    for c, std, direction in zip(cs, found.std, found.directions, strict=False):
        z += c * std * direction  # a code smaller than N_DIRECTIONS has fewer directions
    return Exploration(to_pil(codec.decode(z[None])[0], 4 if codec.size <= 64 else 1),
                       found.description)
