""""Find this face": optimise a latent code until the generator draws a given face (GAN
inversion). Checked in the request, optimised in a worker process (``core.live``, like live
training: progress, Stop, nothing kept when stopped); the result is a found code of the session
that edits and interpolates like a seed (``codes.py``). No gradio here.

The optimisation: start from the best of ``INIT_CANDIDATES`` latents drawn from the seed (the
lowest pixel error), then Adam on

    loss = MSE(G(z), target)                      pixels in [-1, 1]
         + id_weight * (1 - cos(f(G(z)), f(target)))   f = face-id features (weights/gan-face-id)
         + PRIOR_WEIGHT * (mean(z²) - 1)²              keeps |z| where N(0, I) puts it

With ``mode="z+layer1"`` an offset to the first layer's output (C, 4, 4) is optimised too
(penalised by ``OFFSET_WEIGHT * mean(offset²)``): more faces can be reached, at the price of a
code that is no longer a plain z.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from playground.core import registry, repro
from playground.core.device import check_train_device
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.seeding import make_generator, resolve_seed
from playground.data.faces import MIN_PHOTO_SIDE, read_face_photo
from playground.gan import FACE_ID, FAMILY
from playground.gan.codes import FOUND_FAMILY, META_FILE, render, save_found
from playground.gan.inference import _output, _record, load_generator, to_pil, training_faces

MODES = ("z", "z+layer1")
MAX_FIND_STEPS = 3000
SHARED_MAX_FIND_STEPS = 1000
LR = 0.05
INIT_CANDIDATES = 64
PRIOR_WEIGHT = 0.1
OFFSET_WEIGHT = 0.1
MAX_ID_WEIGHT = 10.0
MIN_SIDE = MIN_PHOTO_SIDE  # px; smaller images carry no face


# ---- the target face -------------------------------------------------------------------------

def read_upload(path, size: int, channels: int) -> np.ndarray:
    """An uploaded photo as the generator draws faces: (C, S, S) in [0, 1], centre square crop
    (``data.faces.read_face_photo``, shared with the VAE)."""
    pixels = read_face_photo(path, size, channels)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def training_photo(index, size: int, channels: int) -> np.ndarray:
    """Photo ``index`` of the training faces at the generator's size: (C, S, S) in [0, 1]."""
    faces = training_faces(size)
    if faces is None:
        raise UserInputError("The Olivetti photos are not on this machine "
                             "(assets/olivetti_faces.npz is missing); upload a photo instead.")
    index = check_range("Photo number", index, 0, len(faces.images) - 1, integer=True)
    return np.repeat(faces.images[index][None], channels, axis=0)


def target_face(photo, upload, size: int, channels: int) -> tuple[np.ndarray, str]:
    """The face to find, (C, S, S) in [0, 1], and how the record names it."""
    if upload:
        pixels = read_upload(upload, size, channels)
        digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
        return pixels, f"upload sha256:{digest}"
    index = check_range("Photo number", photo, 0, 10**6, integer=True)
    return training_photo(index, size, channels), f"photo {index}"


# ---- in the request: check and queue ---------------------------------------------------------

def start_find(model_name: str, photo=0, upload: str | None = None, steps=300,
               mode: str = "z", id_weight=0.1, seed=0, device: str = "cpu") -> LiveRun:
    """Check the settings and queue a search; its ``result`` is the found code's name."""
    steps = check_range("Steps", steps, 1, step_cap(MAX_FIND_STEPS, SHARED_MAX_FIND_STEPS),
                        integer=True)
    id_weight = check_range("Face-id weight", id_weight, 0, MAX_ID_WEIGHT)
    seed = resolve_seed(seed)
    check_train_device(device)
    if mode not in MODES:
        raise UserInputError(f"Optimise must be one of {', '.join(MODES)}, got "
                             f"{str(mode)[:40]!r}.")
    if id_weight and not (registry.WEIGHTS_DIR / FACE_ID / "config.json").is_file():
        raise UserInputError("The face-id loss needs weights/gan-face-id, which is missing; "
                             "set its weight to 0.")
    entry = registry.resolve(FAMILY, model_name)
    model = load_generator(entry)
    from playground.gan.directions import first_layer

    first_layer(model)  # a generator we can split at its first layer (clear message if not)
    target, label = target_face(photo, upload, model.image_size, model.nc)
    params = {"target": label, "steps": steps, "mode": mode, "id_weight": id_weight, "lr": LR,
              "init_candidates": INIT_CANDIDATES}
    record = _record(entry, params, seed)
    return start_live_run(
        FOUND_FAMILY, "playground.gan.find:build_run",
        {"source": entry.source, "model": entry.name, "target": target, "steps": steps,
         "mode": mode, "id_weight": id_weight, "seed": seed, "device": device,
         "record": record},
        label=f"found {label[:22]} ({{id}})", entry_extra={"model": entry.name},
        description=f"a face found with {entry.name}")


# ---- in the worker: the optimisation as a TrainTask ------------------------------------------

class FoundCode(nn.Module):
    """The parameters being searched: z (1, nz) and optionally a first-layer offset."""

    def __init__(self, z: torch.Tensor, offset_shape: tuple | None):
        super().__init__()
        self.z = nn.Parameter(z.clone()[None])
        self.offset = None if offset_shape is None else nn.Parameter(torch.zeros(offset_shape))


def _id_features(net, x: torch.Tensor) -> torch.Tensor:
    """Face-id features (B, 64) of images in [-1, 1] (colour averaged to grey)."""
    return net.features(x.mean(1, keepdim=True) if x.shape[1] != 1 else x)


def best_start(generator, target: torch.Tensor, seed: int) -> torch.Tensor:
    """Of ``INIT_CANDIDATES`` latents drawn from ``seed``, the one whose face is nearest in
    pixels to ``target`` (1, C, S, S) in [-1, 1]; (nz,)."""
    candidates = torch.randn(INIT_CANDIDATES, generator.nz, generator=make_generator(seed))
    with torch.no_grad():
        errors = ((generator(candidates) - target) ** 2).flatten(1).mean(1)
    return candidates[int(errors.argmin())]


def _losses(generator, net, code: FoundCode, target, target_feats, id_weight: float) -> dict:
    image = render(generator, code.z, code.offset)
    pixel = F.mse_loss(image, target)
    out = {"pixel": pixel, "loss": pixel + PRIOR_WEIGHT * ((code.z ** 2).mean() - 1) ** 2}
    if code.offset is not None:
        out["loss"] = out["loss"] + OFFSET_WEIGHT * (code.offset ** 2).mean()
    if net is not None:
        out["id"] = 1 - F.cosine_similarity(_id_features(net, image), target_feats).mean()
        out["loss"] = out["loss"] + id_weight * out["id"]
    return out


def build_run(out_dir: str, source: str, model: str, target: np.ndarray, steps: int,
              mode: str, id_weight: float, seed: int, device: str, record: dict):
    """In the worker: (LoopConfig, TrainTask) of one search."""
    from playground.core.training import LoopConfig, TrainTask
    from playground.gan.inference import read_generator

    gen = read_generator(source).requires_grad_(False)
    net = None
    if id_weight:
        from playground.gan.faceid import FaceIdNet

        net = FaceIdNet.from_pretrained(str(registry.WEIGHTS_DIR / FACE_ID)).eval()
        net.requires_grad_(False)
    goal = torch.from_numpy(np.asarray(target, dtype=np.float32))[None] * 2 - 1  # (1, C, S, S)
    start = best_start(gen, goal, seed)
    offset_shape = None
    if mode == "z+layer1":
        offset_shape = tuple(gen.main[0](start[None, :, None, None]).shape)
    code = FoundCode(start, offset_shape)
    held = {"device": None}

    def on(device_now):  # move the frozen parts with the code (once)
        if held["device"] != device_now:
            gen.to(device_now)
            held.update(device=device_now, goal=goal.to(device_now),
                        feats=None if net is None else _id_features(net.to(device_now),
                                                                    goal.to(device_now)))
        return held

    def step(ctx, _batch) -> dict:
        h = on(ctx.accelerator.device)
        losses = _losses(gen, net, ctx.models["code"], h["goal"], h["feats"], id_weight)
        ctx.optimizers["code"].zero_grad(set_to_none=True)
        ctx.accelerator.backward(losses["loss"])
        ctx.optimizers["code"].step()
        row = {"loss": losses["loss"].item(), "rms": losses["pixel"].sqrt().item() / 2}
        if "id" in losses:
            row["id"] = losses["id"].item()
        return row

    def current(models) -> torch.Tensor:
        h = on(next(models["code"].parameters()).device)
        with torch.no_grad():
            c = models["code"]
            return ((render(gen, c.z, c.offset) + 1) / 2).clamp(0, 1).cpu(), h

    def sample(models, _step: int) -> torch.Tensor:
        return current(models)[0]

    def save(models, folder: Path) -> None:
        image, h = current(models)
        c = models["code"]
        with torch.no_grad():
            final = _losses(gen, net, c, h["goal"], h["feats"], id_weight)
            first = _losses(gen, net, FoundCode(start, offset_shape).to(h["device"]), h["goal"],
                            h["feats"], id_weight)
        meta = {"model": model, "model_source": source, "record": record,
                "rms_start": float(first["pixel"].sqrt() / 2),
                "rms_final": float(final["pixel"].sqrt() / 2)}
        if net is not None:
            meta.update(id_start=float(first["id"]), id_final=float(final["id"]))
        save_found(folder, c.z.detach()[0],
                   None if c.offset is None else c.offset.detach()[0], meta)
        to_pil(image[0]).save(folder / "found.png")
        to_pil(torch.from_numpy(np.asarray(target, dtype=np.float32))).save(folder / "target.png")

    loop = LoopConfig(max_steps=steps, out_dir=out_dir, log_every=max(1, steps // 60),
                      sample_every=max(1, steps // 30), sample_at_start=True, device=device,
                      progress=False, checkpoints=False)
    task = TrainTask(models={"code": code},
                     optimizers={"code": torch.optim.Adam(code.parameters(), lr=LR)},
                     batches=[None], step=step, save=save, sample=sample,
                     summary={"search": record.get("params", {})})
    return loop, task


# ---- back in the request: the result ---------------------------------------------------------

@dataclass
class FoundFace:
    """A finished search: target | found face | nearest training photo, and the figures."""

    name: str  # the found code's name (use it as "start from")
    picture_png: str  # target | found (| nearest photo), with the record
    rms_start: float  # RMS pixel error in [0, 1] of the best starting latent
    rms_final: float
    id_start: float | None  # 1 - cosine of face-id features (None: not used)
    id_final: float | None
    nearest_person: int | None  # person of the found face's nearest training photo
    record: dict


def found_face(name: str) -> FoundFace:
    """Read a finished search of this session and draw its result."""
    import json

    from playground.gan.inside import _sheet, _with_photos, lookalikes

    folder = registry.resolve(FOUND_FAMILY, name).path
    meta = json.loads((folder / META_FILE).read_text())
    target, found = (np.asarray(Image.open(folder / f), dtype=np.float32)[::2, ::2] / 255.0
                     for f in ("target.png", "found.png"))
    pair = torch.from_numpy(np.stack([target, found]))
    pair = pair[:, None] if pair.dim() == 3 else pair.permute(0, 3, 1, 2)  # (2, C, S, S)
    who = lookalikes(pair[1:])
    rows = _with_photos(pair[1:], who)
    picture = torch.cat([pair, rows[1]]) if len(rows) > 1 else pair
    record = dict(meta["record"], result={k: meta[k] for k in meta if k.startswith(("rms",
                                                                                     "id_"))})
    png = repro.save_png(_sheet([picture], len(picture)), record, _output("gan-found", ".png"))
    return FoundFace(name, str(png), meta["rms_start"], meta["rms_final"], meta.get("id_start"),
                     meta.get("id_final"), who[0].person if who else None, record)


def progress_picture(target: np.ndarray, current: torch.Tensor | None) -> Image.Image:
    """Target | the current reconstruction (1, C, S, S) in [0, 1], for the progress view."""
    from playground.gan.inside import _sheet

    goal = torch.from_numpy(np.asarray(target, dtype=np.float32))[None]
    return _sheet([goal if current is None else torch.cat([goal, current.float()])], 2)
