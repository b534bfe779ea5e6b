"""In-browser training: start a DCGAN run in a thread and register its result (no gradio here)."""

from __future__ import annotations

import dataclasses

import torch

from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, train_and_register
from playground.core.training import LoopConfig
from playground.data.faces import faces_source
from playground.gan import FAMILY

RUNS_DIR = registry.REPO_ROOT / "runs"
MAX_LIVE_STEPS = 20000


def device_choices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _continue_from(model_name: str, size: int):
    """(G, D) of a local model trained here, to continue training it."""
    from playground.gan.model import Discriminator, Generator

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
    return g.train(), Discriminator.from_pretrained(str(folder / "discriminator")).train()


def start_training(mode: str, model_name: str, size, device: str, steps) -> LiveRun:
    """Start a live run; its ``result`` is the registered model name once it ends."""
    from playground.gan.train import build_task, load_training_faces, resolve_config

    size = int(check_range("Image size", size, 32, 64, integer=True))
    if size not in (32, 64):
        raise UserInputError("Image size must be 32 or 64.")
    steps = check_range("Steps", steps, 1, MAX_LIVE_STEPS, integer=True)
    if device not in ("cpu", "cuda"):
        raise UserInputError(f"Device must be cpu or cuda, got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("CUDA is not available on this machine; train on the CPU.")
    if mode not in ("scratch", "continue"):
        raise UserInputError("Choose 'scratch' or 'continue'.")
    source = faces_source()
    if source is None:
        raise UserInputError("No training faces on this machine (assets/olivetti_faces.npz is "
                             "missing); set PLAYGROUND_FACES to a .npz/.mat file or an image "
                             "folder.")
    cfg = dataclasses.replace(resolve_config("olivetti" if size == 64 else "olivetti-32"),
                              steps=steps)
    init = _continue_from(model_name, size) if mode == "continue" else None
    data = load_training_faces(str(source), size)
    run = LiveRun(fn=lambda on_log, on_sample, cancel: None)
    out = RUNS_DIR / f"gan-live-{run.run_id}"
    loop = LoopConfig(max_steps=steps, out_dir=str(out), log_every=10,
                      sample_every=max(1, steps // 40), device=device, progress=False)
    task = build_task(cfg, loop, data, init=init)
    label = f"trained here: {size}px {mode} {steps} steps ({run.run_id[:6]})"

    fn = train_and_register(loop, task, FAMILY, label, extra={"faces": True})

    run.fn = fn
    return run.start()
