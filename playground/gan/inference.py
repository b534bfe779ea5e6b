"""Sampling, truncation, interpolation and nearest training faces (no gradio here).

Truncation: a face is ``G(psi * z)`` with ``z ~ N(0, I)`` drawn from the face's own seed, so
``psi = 1`` is the plain GAN, smaller ``psi`` pulls every latent towards the mean latent 0 (more
typical, less varied faces) and ``psi = 0`` gives the same "mean face" ``G(0)`` for every seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from playground.core import registry, repro, sessions
from playground.core.device import get_device
from playground.core.errors import UserInputError, check_range
from playground.core.latent import slerp
from playground.core.seeding import MAX_SEED, make_generator, resolve_seed
from playground.data.faces import faces_source, load_faces
from playground.gan import FAMILY
from playground.gan.augment import faces_to_tensor, to_unit
from playground.gan.metrics import nearest, rms_distance, same_person_distances

MAX_SAMPLES = 64
PSI_RANGE = (0.0, 2.0)
MAX_FRAMES = 32


def read_generator(source: str):
    """Our HF-format folder / hub id, or the tutorial checkpoint of the pip package, in fp32 on
    the CPU in eval mode (a worker process moves it to its own device)."""
    from playground.gan.model import Generator, generator_from_tutorial_state_dict

    tar = Path(source) / "weights.tar"
    if tar.is_file():
        state = torch.load(tar, map_location="cpu", weights_only=True)
        model = generator_from_tutorial_state_dict(state.get("netG_state_dict", state))
    else:
        model = Generator.from_pretrained(source)
    return model.eval()


def load_generator_source(source: str):
    """loader(source): ``read_generator`` on the app's device (on ZeroGPU: cuda at start-up,
    as ``spaces`` expects)."""
    return read_generator(source).to(get_device())


def load_generator(model: str | registry.ModelEntry):
    """The cached generator of a registry name / hub id, or of an entry already resolved."""
    entry = model if isinstance(model, registry.ModelEntry) else registry.resolve(FAMILY, model)
    return registry.load_model(FAMILY, entry, load_generator_source)


# ---- parsing and validation -------------------------------------------------------------

def parse_seed_list(text: str | None) -> list[int]:
    """"1, 2 3;4" -> [1, 2, 3, 4]; empty -> []. Every seed must be a 64-bit whole number."""
    if text is None or not str(text).strip():
        return []
    seeds = []
    for token in re.split(r"[\s,;]+", str(text).strip()):
        if not token:
            continue
        if not re.fullmatch(r"[+]?\d+", token):
            raise UserInputError(f"Seeds must be whole numbers between 0 and {MAX_SEED}; "
                                 f"{token[:40]!r} is not.")
        value = int(token)
        if value > MAX_SEED:
            raise UserInputError(f"Seed {token[:40]} does not fit in 64 bits (max {MAX_SEED}).")
        seeds.append(value)
    if len(seeds) > MAX_SAMPLES:
        raise UserInputError(f"At most {MAX_SAMPLES} seeds at once, got {len(seeds)}.")
    return seeds


def grid_seeds(seed, randomize: bool, n, seed_list: str | None = None) -> list[int]:
    """The seed of every face: the list if given, else ``seed, seed+1, ... seed+n-1``."""
    listed = parse_seed_list(seed_list)
    if listed:
        return listed
    n = check_range("Number of samples", n, 1, MAX_SAMPLES, integer=True)
    base = resolve_seed(seed, randomize)
    if base + n - 1 > MAX_SEED:
        raise UserInputError(f"Seeds {base}..{base + n - 1} would pass the 64-bit limit; "
                             "use a smaller seed.")
    return [base + i for i in range(n)]


def latent(seed: int, nz: int) -> torch.Tensor:
    """The latent z (nz,) of one seed, drawn on CPU."""
    return torch.randn(nz, generator=make_generator(seed))


@torch.no_grad()
def generate(model, latents: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
    """latents (B, nz) -> images (B, C, S, S) in [0, 1] on CPU, truncated by ``psi``."""
    device = next(model.parameters()).device
    return to_unit(model(latents.to(device) * psi)).cpu()


def to_pil(image: torch.Tensor, scale: int = 2) -> Image.Image:
    """(C, S, S) in [0, 1] -> PIL (grey or RGB), upscaled ``scale``x for display."""
    arr = (image.numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    return pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)


def grid_image(images: torch.Tensor, columns: int) -> Image.Image:
    """(B, C, S, S) -> one PIL grid with ``columns`` columns, 2 px white gaps."""
    b, c, s, _ = images.shape
    rows = (b + columns - 1) // columns
    canvas = torch.ones(c, rows * (s + 2) - 2, columns * (s + 2) - 2)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        canvas[:, r * (s + 2): r * (s + 2) + s, col * (s + 2): col * (s + 2) + s] = img
    return to_pil(canvas, scale=1)


# ---- training faces (for "nearest training face") ----------------------------------------

@dataclass
class TrainingFaces:
    images: np.ndarray  # (N, S, S) in [0, 1]
    persons: np.ndarray  # (N,)
    same_person_median: float  # typical RMS distance between two photos of one person
    same_person_p05: float  # 5th percentile: "as close as two photos of a person get"


def training_faces(size: int, source: str | Path | None = None) -> TrainingFaces | None:
    """The training photos at ``size`` px: ``source``, else ``faces_source()`` (the bundled
    Olivetti faces or ``$PLAYGROUND_FACES``); None when there are none."""
    path = source or faces_source()
    return None if path is None else _training_faces(size, str(path))


@lru_cache(maxsize=4)
def _training_faces(size: int, source: str) -> TrainingFaces:
    faces = load_faces(source)
    images = to_unit(faces_to_tensor(faces.images, size))[:, 0].numpy()
    same = same_person_distances(images, faces.persons)
    return TrainingFaces(images, faces.persons, float(np.median(same)),
                         float(np.percentile(same, 5)))


@dataclass
class NearestPhotos:
    """The nearest training photo of each sample, against same-person photo distances."""

    images: list[Image.Image]  # one per sample, upscaled like the samples
    distances: list[float]  # RMS pixel distance in [0, 1] (0 = identical)
    same_person_median: float  # typical distance between two photos of one person
    same_person_p05: float  # the closest 5% of same-person pairs

    @property
    def closer_than_p05(self) -> int:
        """How many samples are closer to a photo than the closest 5% of same-person pairs."""
        return sum(d < self.same_person_p05 for d in self.distances)


def nearest_faces(samples: torch.Tensor) -> NearestPhotos | None:
    """For grey samples (B, 1, S, S) in [0, 1]: the nearest training photo of each (None for
    colour samples or when no training faces are on this machine)."""
    if samples.shape[1] != 1:
        return None
    faces = training_faces(samples.shape[-1])
    if faces is None:
        return None
    idx, dist = nearest(samples[:, 0].numpy(), faces.images, rms_distance)
    return NearestPhotos([to_pil(torch.from_numpy(faces.images[i])[None]) for i in idx],
                         [float(d) for d in dist], faces.same_person_median,
                         faces.same_person_p05)


# ---- the two requests the tab and the API serve -------------------------------------------

@dataclass
class FaceSamples:
    """What ``sample_faces`` returns: one face per seed."""

    images: list[Image.Image]  # grey or RGB, upscaled 2x for display
    seeds: list[int]
    grid_png: str  # path of the grid PNG carrying ``record``
    record: dict  # reproducibility record
    nearest: NearestPhotos | None  # None for colour models / no training faces
    face_pngs: list[str]  # one PNG per face, each carrying the record of that face alone


@dataclass
class Interpolation:
    """What ``interpolate_faces`` returns: the faces along the latent path."""

    frames: list[Image.Image]
    strip_png: str  # all frames side by side, carrying ``record``
    gif: str  # there and back
    record: dict


def _record(entry: registry.ModelEntry, params: dict, seed) -> dict:
    """The record of one output; a hub model's carries the commit it was loaded at."""
    return repro.make_record(FAMILY, entry.name, entry.source, params, seed,
                             revision=registry.revision(entry))


def _output(stem: str, suffix: str) -> Path:
    """A fresh file of the requesting session (never shared, never rewritten while served)."""
    return sessions.unique_output(FAMILY, stem, suffix)


def _face_pngs(entry: registry.ModelEntry, faces: list[Image.Image], seeds: list[int],
               psi: float) -> list[str]:
    """Each face as its own PNG whose record reproduces it alone (``seed_list`` = its seed)."""
    paths = []
    for face, seed in zip(faces, seeds, strict=True):
        record = _record(entry, {"psi": psi, "n": 1, "seeds": [seed]}, seed)
        paths.append(str(repro.save_png(face, record, _output(f"gan-face-{seed}", ".png"))))
    return paths


def sample_faces(model_name: str, seed=0, randomize: bool = False, n=8, psi=1.0,
                 seed_list: str | None = None) -> FaceSamples:
    """A grid of faces, one seed per face (``seed, seed+1, ...`` or the listed seeds), each with
    its nearest training photo."""
    psi = check_range("Truncation psi", psi, *PSI_RANGE)
    seeds = grid_seeds(seed, randomize, n, seed_list)
    entry = registry.resolve(FAMILY, model_name)
    model = load_generator(entry)
    latents = torch.stack([latent(s, model.nz) for s in seeds])  # (B, nz)
    images = generate(model, latents, psi)  # (B, C, S, S)
    record = _record(entry, {"psi": psi, "n": len(seeds), "seeds": seeds}, seeds[0])
    grid = repro.save_png(grid_image(images, min(8, len(seeds))), record,
                          _output(f"gan-grid-{seeds[0]}", ".png"))
    faces = [to_pil(img) for img in images]
    return FaceSamples(faces, seeds, str(grid), record, nearest_faces(images),
                       _face_pngs(entry, faces, seeds, psi))


def interpolate_faces(model_name: str, seed_a, seed_b, frames=8, mode: str = "spherical",
                      psi=1.0, frame_ms=120) -> Interpolation:
    """Faces along the path from seed_a's latent to seed_b's (``core.latent.slerp`` or a
    straight line): a strip PNG and a GIF."""
    a, b = resolve_seed(seed_a), resolve_seed(seed_b)
    frames = check_range("Frames", frames, 2, MAX_FRAMES, integer=True)
    psi = check_range("Truncation psi", psi, *PSI_RANGE)
    frame_ms = check_range("Frame duration (ms)", frame_ms, 20, 2000, integer=True)
    if mode not in ("linear", "spherical"):
        raise UserInputError(f"Interpolation must be 'linear' or 'spherical', got {mode!r}.")
    entry = registry.resolve(FAMILY, model_name)
    model = load_generator(entry)
    za, zb = latent(a, model.nz), latent(b, model.nz)
    ts = torch.linspace(0, 1, frames)
    path = [torch.lerp(za, zb, float(t)) if mode == "linear" else slerp(za, zb, float(t))
            for t in ts]
    images = generate(model, torch.stack(path), psi)
    record = _record(entry, {"seed_a": a, "seed_b": b, "frames": frames, "mode": mode,
                             "psi": psi}, a)
    return write_interpolation(images, record, f"{a}-{b}", frame_ms)


def write_interpolation(images: torch.Tensor, record: dict, stem: str,
                        frame_ms: int = 120) -> Interpolation:
    """Frames (F, C, S, S) in [0, 1] -> a strip PNG and a there-and-back GIF, both carrying
    ``record``."""
    strip = repro.save_png(grid_image(images, len(images)), record,
                           _output(f"gan-strip-{stem}", ".png"))
    pics = [to_pil(img) for img in images]
    gif = _output(f"gan-interpolation-{stem}", ".gif")
    loop = pics + pics[-2:0:-1]  # there and back
    loop[0].save(gif, save_all=True, append_images=loop[1:], duration=frame_ms, loop=0,
                 comment=repro.record_json(record))  # the record, as in the PNG
    return Interpolation(pics, str(strip), str(gif), record)
