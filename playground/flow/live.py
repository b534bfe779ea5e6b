"""Training a flow in the browser: validate the settings, start a LiveRun, turn its progress into
pictures, a loss table and a status line (plain values; the tab streams them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun
from playground.core.training import LoopConfig, train_loop
from playground.flow import FAMILY
from playground.flow.model import FLOW_TYPES
from playground.flow.render import density_image, draw_points, scatter_image
from playground.flow.targets import TARGETS, get_target
from playground.flow.train import resolve_config

RUNS_DIR = registry.REPO_ROOT / "runs" / "flow"
LIVE_IMAGE = 320


def live_config(flow_type: str, depth, width, lr, steps, batch_size, target: str | None):
    """Validated FlowConfig for an in-browser run (the 'live' preset, with the user's values)."""
    if flow_type not in FLOW_TYPES:
        raise UserInputError(f"Flow type must be one of {', '.join(FLOW_TYPES)}, "
                             f"got {flow_type!r}.")
    lr = check_range("Learning rate", lr, 1e-5, 0.05)
    steps = check_range("Steps", steps, 10, 20_000, integer=True)
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


def start_run(cfg, points: torch.Tensor | None, seed: int) -> LiveRun:
    """Start training in a thread; the result (when not cancelled) is saved under runs/flow/."""
    from playground.flow.train import build_task

    if points is None and cfg.target not in TARGETS:
        raise UserInputError(f"Unknown target {cfg.target!r}.")
    run = LiveRun(fn=lambda *a: None)
    out = RUNS_DIR / f"{run.run_id}"
    loop = LoopConfig(max_steps=cfg.steps, out_dir=str(out), log_every=max(10, cfg.steps // 40),
                      sample_every=max(20, cfg.steps // 20), sample_at_start=True, seed=seed,
                      progress=False,
                      device="cpu", checkpoint_dir=str(RUNS_DIR / ".ckpt" / run.run_id))

    def fn(on_log, on_sample, cancel):
        torch.set_num_threads(1)  # leave the other core to the server and other users
        task = build_task(cfg, loop, points)
        return train_loop(loop, task, on_log=on_log, on_sample=on_sample, cancel=cancel)

    run.fn = fn
    return run.start()


def register_result(run: LiveRun, cfg) -> str | None:
    """Make a finished run selectable in the model dropdown; returns its name."""
    result = run.result
    if result is None or result.cancelled or result.out_dir is None:
        return None
    name = f"my-flow-{run.run_id[:6]} ({cfg.flow_type}, {cfg.target})"
    registry.register(registry.ModelEntry(name, FAMILY, path=Path(result.out_dir),
                                          description="trained in this session",
                                          extra={"config": dataclasses.asdict(cfg)}))
    return name


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


def status_line(run: LiveRun, cfg, seed: int, name: str | None = None) -> str:
    last = run.history[-1] if run.history else {}
    parts = [f"step {last.get('step', 0)}/{cfg.steps}"]
    if "time_s" in last:
        parts.append(f"{last['time_s']:.1f} s")
    for key, label in (("train_nll", "train NLL"), ("test_nll", "test NLL"), ("kl", "KL(p‖q)")):
        if key in last:
            parts.append(f"{label} {last[key]:.3f}")
    parts.append(f"seed {seed}")
    text = " · ".join(parts)
    if run.done.is_set():
        if run.error is not None:
            raise run.error
        if run.result is not None and run.result.cancelled:
            return f"Stopped at {text}."
        return f"Done: {text}." + (f" Saved as **{name}** (pick it above)." if name else "")
    return f"Training: {text}"
