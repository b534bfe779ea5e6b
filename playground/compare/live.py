"""Refitting all five families in the browser: validate the settings, queue one LiveRun (the
interleaved ``train.build_task`` in a worker process, ``core.live``), score the result on
held-out points in the worker as it saves, and turn progress into ``LiveFrame``s (five panels,
a table, a status line, the record) that the tab streams with ``ui.stream_live_run``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from playground.compare import FAMILY
from playground.compare.inference import (
    EVAL_SEED,
    RESULTS,
    Comparison,
    ScoreRow,
    held_out_points,
    load_fit_folder,
    score_models,
    train_seconds,
)
from playground.compare.metrics import target_entropy
from playground.compare.render import panel_image
from playground.compare.train import LABELS, CompareConfig, build_task, resolve_config, split_data
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.repro import make_record
from playground.core.training import LoopConfig, TrainTask
from playground.data.targets2d import TARGETS, get_target

MAX_LIVE_STEPS = 5_000
SHARED_MAX_STEPS = 1_000
LIVE_EVAL_POINTS = 1000  # held-out points the live result is scored on


def live_config(steps, target: str, families: str | None = None) -> CompareConfig:
    """The validated 'live' preset with the user's number of steps (the same for all five)."""
    steps = check_range("Steps", steps, 10, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    if target != "custom":
        get_target(target)
    overrides = {"steps": steps, "target": target, "warmup": min(50, steps // 10)}
    if families:
        overrides["families"] = families
    return resolve_config("live", overrides)


def start_run(cfg: CompareConfig, points: torch.Tensor | None, seed: int) -> LiveRun:
    """Queue the interleaved fit in a worker; when it ends the five models are saved, scored
    and registered for this session (``run.result`` is the name)."""
    if points is None and cfg.target not in TARGETS:
        raise UserInputError(f"Unknown target {cfg.target!r}.")
    return start_live_run(FAMILY, "playground.compare.live:build_run",
                          {"cfg": cfg, "points": points, "seed": seed},
                          label=f"my-compare-{{id}} ({cfg.target})",
                          entry_extra={"config": dataclasses.asdict(cfg)})


def score_folder(folder: Path, cfg: CompareConfig, held: torch.Tensor, seed: int) -> dict:
    """Score a saved fit folder on ``held`` and write its results.json; returns the data."""
    target = cfg.target
    rows = score_models(load_fit_folder(folder), held, target, seed=seed,
                        train_s=train_seconds(folder))
    entropy = target_entropy(target, held) if target in TARGETS else None
    record = make_record(FAMILY, folder.name, str(folder),
                         {"target": target, "steps": cfg.steps, "n_eval": len(held),
                          "held_out_seed": EVAL_SEED if target in TARGETS else "20 % split",
                          "config": dataclasses.asdict(cfg)}, seed)
    data = {"target": target, "n_eval": len(held),
            "entropy": None if entropy is None else round(entropy.value, 4),
            "rows": [r.__dict__ for r in rows], "record": record}
    (folder / RESULTS).write_text(json.dumps(data, indent=1, default=str))
    return data


def build_run(out_dir: str, cfg: CompareConfig, points: torch.Tensor | None,
              seed: int) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop and the interleaved task; saving also scores."""
    loop = LoopConfig(max_steps=cfg.steps, out_dir=out_dir, log_every=max(10, cfg.steps // 20),
                      sample_every=max(25, cfg.steps // 8), sample_at_start=True, seed=seed,
                      progress=False, device="cpu", checkpoints=False)
    task = build_task(cfg, loop, points)
    held = (held_out_points(cfg.target, LIVE_EVAL_POINTS) if points is None
            else split_data(cfg, points, seed)[1])
    save = task.save

    def save_and_score(models, folder: Path) -> None:
        save(models, folder)
        score_folder(folder, cfg, held, seed)
    task.save = save_and_score
    return loop, task


@dataclass
class LiveFrame:
    panels: list[Image.Image | None]  # FAMILIES order (None: not trained in this run)
    table: list[dict]
    status: str
    record: dict | None = None
    model_name: str | None = None


def loss_table(history: list[dict], families: list[str]) -> list[dict]:
    """While training: each family's latest held-out figure and its training seconds."""
    last = history[-1] if history else {}
    rows = []
    for family in families:
        figures = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith(family + "/")}
        held = {k: round(v, 3) for k, v in figures.items() if k.startswith("test")}
        rows.append({"family": LABELS[family], "held-out loss": json.dumps(held) if held else "—",
                     "train time (s)": f"{figures.get('train_s', 0):.1f}"})
    return rows


@dataclass
class LiveView:
    """Turns the run's progress into frames (``stream_live_run``'s three callbacks)."""

    cfg: CompareConfig
    seed: int
    points: torch.Tensor | None = None
    panels: list = field(default_factory=list)

    def __post_init__(self) -> None:
        data = (self.points if self.points is not None
                else held_out_points(self.cfg.target, 800))
        self.context = np.asarray(data[:800])
        self.families = self.cfg.family_list()

    def _panels(self, run: LiveRun) -> list:
        if run.samples:
            step, sample = run.samples[-1]
            self.panels = [panel_image(f"{LABELS[f]} · step {step}", sample[f]["samples"],
                                       sample[f]["logq"], self.context)
                           if f in sample else None for f in LABELS]
        return self.panels or [None] * len(LABELS)

    def _status(self, run: LiveRun, word: str) -> str:
        last = run.history[-1] if run.history else {}
        note = run.waiting_note() if hasattr(run, "waiting_note") else ""
        return note or (f"{word}: step {last.get('step', 0)}/{self.cfg.steps} · "
                        f"{last.get('time_s', 0):.1f} s · seed {self.seed}")

    def progress(self, run: LiveRun) -> LiveFrame:
        return LiveFrame(self._panels(run), loss_table(run.history, self.families),
                         self._status(run, "Training"))

    def finished(self, run: LiveRun) -> LiveFrame:
        folder = Path(run.summary["out_dir"])
        data = json.loads((folder / RESULTS).read_text())
        comparison = Comparison(data["target"], [ScoreRow(**r) for r in data["rows"]],
                                entropy=data.get("entropy"), record=data["record"])
        wall = run.summary.get("wall_time_s", 0)
        entropy = (f" · target entropy {comparison.entropy:.3f} nats"
                   if comparison.entropy is not None else "")
        status = (f"Done: {run.summary.get('steps')} steps of each family in {wall:.1f} s, "
                  f"scored on {data['n_eval']} held-out points{entropy}. Saved as "
                  f"**{run.result}**.")
        return LiveFrame(self._panels(run), comparison.table(), status, data["record"],
                         run.result)

    def stopped(self, run: LiveRun) -> LiveFrame:
        return LiveFrame(self._panels(run), loss_table(run.history, self.families),
                         self._status(run, "Stopped (nothing saved)"))
