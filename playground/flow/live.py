"""Training a flow in the browser: validate the settings, queue a LiveRun (trained in a worker
process and registered for this session by ``core.live``), turn its progress into
``LiveFrame``s of pictures, a loss table and a status line (plain values; the tab streams them
with ``ui.stream_live_run``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image

from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.plot2d import density_image, draw_points, scatter_image
from playground.core.training import LoopConfig, TrainTask
from playground.data.targets2d import TARGETS, get_target
from playground.flow import FAMILY
from playground.flow.model import FLOW_TYPES
from playground.flow.train import FlowConfig, build_task, resolve_config

LIVE_IMAGE = 320
MAX_LIVE_STEPS = 20_000
SHARED_MAX_STEPS = 5_000  # on a shared deployment (a Space): about a minute


def live_config(flow_type: str, depth, width, lr, steps, batch_size,
                target: str | None) -> FlowConfig:
    """Validated FlowConfig for an in-browser run (the 'live' preset, with the user's values)."""
    if flow_type not in FLOW_TYPES:
        raise UserInputError(f"Flow type must be one of {', '.join(FLOW_TYPES)}, "
                             f"got {flow_type!r}.")
    lr = check_range("Learning rate", lr, 1e-5, 0.05)
    steps = check_range("Steps", steps, 10, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    batch_size = check_range("Batch size", batch_size, 16, 4096, integer=True)
    depth = check_range("Depth", depth, 1, 12, integer=True)
    width = check_range("Hidden width", width, 8, 256, integer=True)
    overrides = {"flow_type": flow_type, "depth": depth, "width": width, "lr": lr,
                 "steps": steps, "batch_size": batch_size,
                 "warmup": min(50, steps // 10)}
    if target is not None:
        if target != "custom":
            get_target(target)  # an unknown name is refused with the list of targets
        overrides["target"] = target
    return resolve_config("live", overrides)


def start_run(cfg: FlowConfig, points: torch.Tensor | None, seed: int) -> LiveRun:
    """Queue training in a worker; unless stopped, the result is saved in the session's folder
    and registered (``run.result`` is then its model name, selectable in this session)."""
    if points is None and cfg.target not in TARGETS:
        raise UserInputError(f"Unknown target {cfg.target!r}.")
    return start_live_run(FAMILY, "playground.flow.live:build_run",
                          {"cfg": cfg, "points": points, "seed": seed},
                          label=f"my-flow-{{id}} ({cfg.flow_type}, {cfg.target})",
                          entry_extra={"config": dataclasses.asdict(cfg)})


def build_run(out_dir: str, cfg: FlowConfig, points: torch.Tensor | None,
              seed: int) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task of one live run."""
    loop = LoopConfig(max_steps=cfg.steps, out_dir=out_dir,
                      log_every=max(10, cfg.steps // 40), sample_every=max(20, cfg.steps // 20),
                      sample_at_start=True, seed=seed, progress=False, device="cpu",
                      checkpoints=False)
    return loop, build_task(cfg, loop, points)


def loss_frame(history: list[dict]) -> pd.DataFrame:
    """Long-format table (step, nll, series) of the train and test NLL for a line plot."""
    rows = [{"step": r["step"], "nll": r[key], "series": key.replace("_nll", "")}
            for r in history for key in ("train_nll", "test_nll") if key in r]
    return pd.DataFrame(rows or [{"step": 0, "nll": float("nan"), "series": "train"}])


def progress_pictures(run: LiveRun, points: torch.Tensor | None, index: int = -1):
    """(heatmap, samples) PIL images of sample ``index`` (default the latest; 0 is the untrained
    flow), or (None, None) before the first."""
    if not run.samples:
        return None, None
    _, latest = run.samples[index]
    heat = density_image(latest["logq"], LIVE_IMAGE)
    if points is not None:
        draw_points(heat, np.asarray(points[:800]), color=(255, 255, 255), radius=1.0)
    return heat, scatter_image(latest["samples"], LIVE_IMAGE)


def progress_text(history: list[dict], cfg: FlowConfig, seed: int) -> str:
    """'step 120/400 · 3.1 s · train NLL 2.912 · ... · seed 0' from the latest logged row."""
    last = history[-1] if history else {}
    parts = [f"step {last.get('step', 0)}/{cfg.steps}"]
    if "time_s" in last:
        parts.append(f"{last['time_s']:.1f} s")
    for key, label in (("train_nll", "train NLL"), ("test_nll", "test NLL"), ("kl", "KL(p‖q)")):
        if key in last:
            parts.append(f"{label} {last[key]:.3f}")
    parts.append(f"seed {seed}")
    return " · ".join(parts)


@dataclass
class LiveFrame:
    """One update of the live view: pictures (PIL, None before the first sample), the NLL
    table, the status line, and the registered model name once the run has saved."""

    heatmap: Image.Image | None
    samples: Image.Image | None
    losses: pd.DataFrame
    status: str
    model_name: str | None = None


@dataclass
class LiveView:
    """Turns a run's progress into frames; the three methods are ``stream_live_run``'s
    ``progress``, ``finished`` and ``stopped``.

    The first picture shown is the untrained flow (step 0), so the run visibly starts from
    N(0, I); later frames show the latest sample, and a poll with no picture keeps the last one.
    """

    cfg: FlowConfig
    seed: int
    points: torch.Tensor | None = None
    heatmap: Image.Image | None = None
    samples: Image.Image | None = None

    def _frame(self, run: LiveRun, index: int, status: str, name: str | None = None):
        heat, samples = progress_pictures(run, self.points, index)
        self.heatmap, self.samples = heat or self.heatmap, samples or self.samples
        return LiveFrame(self.heatmap, self.samples, loss_frame(run.history), status, name)

    def _text(self, run: LiveRun) -> str:
        return progress_text(run.history, self.cfg, self.seed)

    def progress(self, run: LiveRun) -> LiveFrame:
        waiting = run.waiting_note()  # queued behind other users' runs: say for what
        if waiting:
            return self._frame(run, -1, waiting)
        return self._frame(run, 0 if self.heatmap is None else -1, f"Training: {self._text(run)}")

    def finished(self, run: LiveRun) -> LiveFrame:
        """The run saved and registered itself: ``run.result`` is its model name."""
        return self._frame(run, -1, f"Done: {self._text(run)}. Saved as **{run.result}** "
                           "(pick it above).", run.result)

    def stopped(self, run: LiveRun) -> LiveFrame:
        return self._frame(run, -1, f"Stopped at {self._text(run)}.")
