"""In-browser training: a VAE run in a thread, registered when it ends (no gradio here)."""

from __future__ import annotations

import dataclasses

import torch

from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, train_and_register
from playground.core.training import LoopConfig
from playground.vae import FAMILY

RUNS_DIR = registry.REPO_ROOT / "runs"
MAX_LIVE_STEPS = 20000


def device_choices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def start_training(steps, device: str = "cpu", latent_dim=32) -> LiveRun:
    """Train a fresh VAE on the faces (held-out people excluded); ``result`` = its model name."""
    from playground.data.faces import faces_source
    from playground.vae.split import load_split
    from playground.vae.train import build_task, resolve_config

    steps = check_range("Steps", steps, 1, MAX_LIVE_STEPS, integer=True)
    latent_dim = check_range("Latent size", latent_dim, 2, 128, integer=True)
    if device not in ("cpu", "cuda"):
        raise UserInputError(f"Device must be cpu or cuda, got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("CUDA is not available on this machine; train on the CPU.")
    source = faces_source()
    if source is None:
        raise UserInputError("The face data is not on this machine (assets/olivetti_faces.npz "
                             "is missing); set PLAYGROUND_FACES to a .npz/.mat file or a folder "
                             "of face images.")
    cfg = dataclasses.replace(resolve_config("olivetti-quick"), steps=steps,
                              latent_dim=latent_dim, kl_warmup=min(500, max(1, steps // 6)))
    split = load_split(str(source))
    run = LiveRun(fn=lambda on_log, on_sample, cancel: None)
    out = RUNS_DIR / f"vae-live-{run.run_id}"
    loop = LoopConfig(max_steps=steps, out_dir=str(out), log_every=max(1, min(50, steps // 10)),
                      sample_every=max(1, steps // 20), device=device, progress=False)
    task = build_task(cfg, loop, split.train, split.val)
    label = f"trained here: {latent_dim}-d, {steps} steps ({run.run_id[:6]})"

    fn = train_and_register(loop, task, FAMILY, label)

    run.fn = fn
    return run.start()
