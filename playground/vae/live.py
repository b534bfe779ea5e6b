"""In-browser training of a VAE: checked here, trained in a worker process (``core.live``),
registered for the session that trained it. No gradio here."""

from __future__ import annotations

import dataclasses

from playground.core.device import check_train_device
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.training import LoopConfig, TrainTask
from playground.vae import FAMILY

MAX_LIVE_STEPS = 20000
SHARED_MAX_STEPS = 3000  # on a shared deployment (a Space)


def start_training(steps, device: str = "cpu", latent_dim=32) -> LiveRun:
    """Queue a fresh VAE on the faces (held-out people excluded); ``result`` = its model name."""
    from playground.data.faces import faces_source

    steps = check_range("Steps", steps, 1, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    latent_dim = check_range("Latent size", latent_dim, 2, 128, integer=True)
    check_train_device(device)
    source = faces_source()
    if source is None:
        raise UserInputError("The face data is not on this machine (assets/olivetti_faces.npz "
                             "is missing); set PLAYGROUND_FACES to a .npz/.mat file or a folder "
                             "of face images.")
    return start_live_run(FAMILY, "playground.vae.live:build_run",
                          {"steps": steps, "device": device, "latent_dim": latent_dim,
                           "faces": str(source)},
                          label=f"trained here: {latent_dim}-d, {steps} steps ({{id}})")


def build_run(out_dir: str, steps: int, device: str, latent_dim: int,
              faces: str) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task of one live run."""
    from playground.vae.split import load_split
    from playground.vae.train import build_task, resolve_config

    cfg = dataclasses.replace(resolve_config("olivetti-quick"), steps=steps,
                              latent_dim=latent_dim, kl_warmup=min(500, max(1, steps // 6)))
    split = load_split(faces)
    loop = LoopConfig(max_steps=steps, out_dir=out_dir, log_every=max(1, min(50, steps // 10)),
                      sample_every=max(1, steps // 20), device=device, progress=False,
                      checkpoints=False)
    return loop, build_task(cfg, loop, split.train, split.val)
