"""In-browser training of a VAE: checked here, trained in a worker process (``core.live``),
registered for the session that trained it. No gradio here.

The user picks β, the final weight of the KL term (loss = reconstruction + β · KL, β ramped up
from 0 over a short warm-up), and a seed. Every log row carries both terms per face in nats
(``recon_nats``, ``kl``, ``beta_kl_nats``), so the tab plots the tug-of-war: a small β leaves
the codes free (low reconstruction cost, high KL), a large β pulls them to the prior (KL falls,
reconstructions blur).
"""

from __future__ import annotations

import dataclasses
import json

from playground.core import repro
from playground.core.device import check_train_device
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.seeding import resolve_seed
from playground.core.sessions import unique_output
from playground.core.training import LoopConfig, TrainTask
from playground.vae import FAMILY

MAX_LIVE_STEPS = 20000
SHARED_MAX_STEPS = 3000  # on a shared deployment (a Space)
MAX_BETA = 10.0
LOG_POINTS = 100  # log rows per run (each carries both loss terms)
LOGS_PER_EVAL = 10  # held-out ELBO every this many log rows (and at the end)


def start_training(steps, device: str = "cpu", latent_dim=32, beta=1.0, seed=0) -> LiveRun:
    """Queue a fresh VAE on the faces (held-out people excluded); ``result`` = its model name."""
    from playground.data.faces import faces_source

    steps = check_range("Steps", steps, 1, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    latent_dim = check_range("Latent size", latent_dim, 2, 128, integer=True)
    beta = check_range("β (KL weight)", beta, 0.0, MAX_BETA)
    seed = resolve_seed(seed)
    check_train_device(device)
    source = faces_source()
    if source is None:
        raise UserInputError("The face data is not on this machine (assets/olivetti_faces.npz "
                             "is missing); set PLAYGROUND_FACES to a .npz/.mat file or a folder "
                             "of face images.")
    return start_live_run(FAMILY, "playground.vae.live:build_run",
                          {"steps": steps, "device": device, "latent_dim": latent_dim,
                           "faces": str(source), "beta": beta, "seed": seed},
                          label=f"trained here: {latent_dim}-d, β {beta:g}, {steps} steps "
                                "({id})")


def live_config(steps: int, latent_dim: int, beta: float):
    """The in-browser run's VAEConfig: the quick preset with the user's steps, size and β."""
    from playground.vae.train import resolve_config

    return dataclasses.replace(resolve_config("olivetti-quick"), steps=steps,
                               latent_dim=latent_dim, beta=beta,
                               kl_warmup=min(500, max(1, steps // 6)))


def build_run(out_dir: str, steps: int, device: str, latent_dim: int, faces: str,
              beta: float = 1.0, seed: int = 0) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task of one live run."""
    from playground.vae.split import load_split
    from playground.vae.train import build_task

    cfg = live_config(steps, latent_dim, beta)
    split = load_split(faces)
    log_every = max(1, steps // LOG_POINTS)
    loop = LoopConfig(max_steps=steps, out_dir=out_dir, log_every=log_every,
                      sample_every=max(1, steps // 20), device=device, progress=False,
                      checkpoints=False, seed=seed)
    task = build_task(cfg, loop, split.train, split.val, eval_every=LOGS_PER_EVAL * log_every)
    task.summary.update({"seed": seed, "live": True})
    return loop, task


def _table(history: list[dict], series: tuple[tuple[str, str], ...]):
    """A long table (step, value, series) of the history's ``key`` columns, for a LinePlot."""
    import pandas as pd

    rows = [{"step": r["step"], "value": r[key], "series": name}
            for r in history for key, name in series if key in r]
    return pd.DataFrame(rows or {"step": [], "value": [], "series": []})


def curves(history: list[dict]) -> tuple:
    """The tab's three plots: -ELBO (bits/dim, train and held-out), the reconstruction term
    and the KL term with β·KL, its part of the loss (nats per face, per logged step)."""
    return (_table(history, (("train_elbo_bpd", "train -ELBO"),
                             ("val_bits_per_dim", "held-out -ELBO"))),
            _table(history, (("recon_nats", "reconstruction −log p(x|z)"),)),
            _table(history, (("kl", "KL(q(z|x) ‖ p(z))"),
                             ("beta_kl_nats", "β·KL (its part of the loss)"))))


def latest_grid(run: LiveRun):
    """The latest decoded fixed codes as one grid (or None before the first sample)."""
    from playground.vae.images import strip_image

    return strip_image(run.samples[-1][1], columns=8) if run.samples else None


def progress_note(history: list[dict], steps: int, beta: float, seed: int) -> str:
    """'Training: step 120 / 300 · recon 9012.3 · KL 41.2 nats · β 0.40 of 1 · seed 0'."""
    if not history:
        return f"Training: step 0 / {steps} · β {beta:g} · seed {seed}"
    last = history[-1]
    return (f"Training: step {last['step']} / {steps} · reconstruction "
            f"{last.get('recon_nats', float('nan')):.1f} · KL {last.get('kl', float('nan')):.2f}"
            f" nats per face · β now {last.get('beta', beta):.3g} (final {beta:g}) · "
            f"seed {seed}")


def write_training_record(run: LiveRun) -> str:
    """A JSON file in the session's outputs: the reproducibility record of a finished run (the
    saved model's hash, the settings, the seed) and its whole history of both loss terms."""
    kwargs = run.kwargs
    params = {"steps": kwargs["steps"], "latent_dim": kwargs["latent_dim"],
              "beta": kwargs["beta"], "device": kwargs["device"],
              "config": dataclasses.asdict(live_config(kwargs["steps"], kwargs["latent_dim"],
                                                       kwargs["beta"]))}
    record = repro.make_record(FAMILY, run.result or "", str(run.out_dir), params,
                               kwargs["seed"])
    path = unique_output(FAMILY, "training-terms", ".json")
    path.write_text(json.dumps({"record": record, "history": run.history}, indent=1,
                               default=str))
    return str(path)
