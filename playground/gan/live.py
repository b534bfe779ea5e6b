"""In-browser training of a DCGAN: checked here, trained in a worker process (``core.live``),
registered for the session that trained it. No gradio here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from playground.core import registry
from playground.core.device import check_train_device
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.training import LoopConfig, TrainTask
from playground.data.faces import faces_source
from playground.gan import FAMILY

MAX_LIVE_STEPS = 20000
SHARED_MAX_STEPS = 3000  # on a shared deployment (a Space): about 5 minutes at 32 px


def _continue_folder(model_name: str, size: int) -> Path:
    """The folder of a model trained here (G and D saved), checked before the run is queued."""
    from playground.gan.model import Generator

    folder = registry.resolve(FAMILY, model_name).path
    if folder is None or not (folder / "config.json").is_file():
        raise UserInputError(f"'{model_name}' cannot be continued: only models trained here "
                             "can. Choose 'from scratch'.")
    g = Generator.from_pretrained(str(folder))
    if g.image_size != size or g.nc != 1:
        raise UserInputError(f"'{model_name}' makes {g.image_size} px images; continue it at "
                             f"{g.image_size} px or train from scratch.")
    if not (folder / "discriminator" / "config.json").is_file():
        raise UserInputError(f"'{model_name}' has no saved discriminator, so it cannot be "
                             "continued. Choose 'from scratch'.")
    return folder


def _load_pair(folder: Path):
    """(G, D) of a saved live run, in training mode, to continue it."""
    from playground.gan.model import Discriminator, Generator

    return (Generator.from_pretrained(str(folder)).train(),
            Discriminator.from_pretrained(str(folder / "discriminator")).train())


def start_training(mode: str, model_name: str, size, device: str, steps) -> LiveRun:
    """Check the settings and queue a live run; its ``result`` is the registered model name."""
    size = int(check_range("Image size", size, 32, 64, integer=True))
    if size not in (32, 64):
        raise UserInputError("Image size must be 32 or 64.")
    steps = check_range("Steps", steps, 1, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    check_train_device(device)
    if mode not in ("scratch", "continue"):
        raise UserInputError("Choose 'scratch' or 'continue'.")
    source = faces_source()
    if source is None:
        raise UserInputError("No training faces on this machine (assets/olivetti_faces.npz is "
                             "missing); set PLAYGROUND_FACES to a .npz/.mat file or an image "
                             "folder.")
    init_from = None
    if mode == "continue":
        init_from = str(_continue_folder(model_name, size))
    return start_live_run(FAMILY, "playground.gan.live:build_run",
                          {"size": size, "steps": steps, "device": device,
                           "faces": str(source), "init_from": init_from},
                          label=f"trained here: {size}px {mode} {steps} steps ({{id}})",
                          entry_extra={"faces": True})


def build_run(out_dir: str, size: int, steps: int, device: str, faces: str,
              init_from: str | None) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task of one live run."""
    from playground.gan.train import build_task, load_training_faces, resolve_config

    cfg = dataclasses.replace(resolve_config("olivetti" if size == 64 else "olivetti-32"),
                              steps=steps)
    init = _load_pair(Path(init_from)) if init_from else None
    loop = LoopConfig(max_steps=steps, out_dir=out_dir, log_every=10,
                      sample_every=max(1, steps // 40), device=device, progress=False,
                      checkpoints=False)
    return loop, build_task(cfg, loop, load_training_faces(faces, size), init=init)
