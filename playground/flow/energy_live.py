"""Fitting a flow to an energy in the browser: validate the settings, queue a LiveRun (the fit
runs in a worker process and is registered for this session by ``core.live``), and turn its
progress into ``EnergyFrame``s: the energy's picture beside the densities of the fit to the
energy (reverse KL) and of the fit to samples (forward KL), the two losses, a table of how
each fit matches the energy, and a status line. Plain values; the tab streams them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pandas as pd
from PIL import Image

from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.plot2d import density_image
from playground.core.repro import make_record, save_png
from playground.core.sessions import unique_output
from playground.core.training import LoopConfig, TrainTask
from playground.data.targets2d import grid_points
from playground.flow import FAMILY
from playground.flow.energies import get_energy
from playground.flow.live import LIVE_IMAGE, MAX_LIVE_STEPS, SHARED_MAX_STEPS
from playground.flow.model import FLOW_TYPES
from playground.flow.train import PRESETS, FlowConfig, build_task, resolve_config

FIT_LABELS = {"energy_fit": "fit to the energy (reverse KL)",
              "sample_fit": "fit to samples (forward KL)"}
LOSS_SERIES = {"energy_fit_kl": "energy fit: KL(q‖p)", "sample_fit_kl": "sample fit: KL(p‖q)"}


def energy_config(energy: str, flow_type: str, depth, width, lr, steps, batch_size,
                  compare: bool = True) -> FlowConfig:
    """Validated FlowConfig for an in-browser energy fit (the 'energy' preset, with the user's
    values)."""
    get_energy(energy)  # an unknown name is refused with the list of energies
    if flow_type not in FLOW_TYPES:
        raise UserInputError(f"Flow type must be one of {', '.join(FLOW_TYPES)}, "
                             f"got {flow_type!r}.")
    overrides = {
        "energy": energy, "flow_type": flow_type, "compare_samples": bool(compare),
        "lr": check_range("Learning rate", lr, 1e-5, 0.05),
        "steps": check_range("Steps", steps, 10, step_cap(MAX_LIVE_STEPS, SHARED_MAX_STEPS),
                             integer=True),
        "batch_size": check_range("Batch size", batch_size, 16, 4096, integer=True),
        "depth": check_range("Depth", depth, 1, 12, integer=True),
        "width": check_range("Hidden width", width, 8, 256, integer=True)}
    overrides["warmup"] = min(50, overrides["steps"] // 10)
    return resolve_config("energy", overrides)


def cli_command(cfg: FlowConfig, seed: int) -> str:
    """The command line that repeats this fit (the preset plus every setting that differs)."""
    base = dataclasses.asdict(PRESETS["energy"])
    sets = [f"--set {k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in dataclasses.asdict(cfg).items()
            if base[k] != v and k not in ("sample_points", "sample_grid")]
    return " ".join(["python -m playground.train flow --preset energy", *sets, f"--seed {seed}"])


def start_energy_run(cfg: FlowConfig, seed: int) -> LiveRun:
    """Queue the fit in a worker; unless stopped, the energy fit is saved in the session's
    folder and registered (``run.result`` is then its model name)."""
    get_energy(cfg.energy)
    return start_live_run(FAMILY, "playground.flow.energy_live:build_run",
                          {"cfg": cfg, "seed": seed},
                          label=f"my-flow-{{id}} ({cfg.flow_type}, energy {cfg.energy})",
                          entry_extra={"config": dataclasses.asdict(cfg)})


def build_run(out_dir: str, cfg: FlowConfig, seed: int) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task of one energy fit."""
    loop = LoopConfig(max_steps=cfg.steps, out_dir=out_dir,
                      log_every=max(10, cfg.steps // 40), sample_every=max(20, cfg.steps // 20),
                      sample_at_start=True, seed=seed, progress=False, device="cpu",
                      checkpoints=False)
    return loop, build_task(cfg, loop)


def energy_image(name: str, size: int = LIVE_IMAGE, resolution: int = 160) -> Image.Image:
    """The energy's density p̃ (any scale) as a heatmap of the box [-4, 4]²."""
    pts, _ = grid_points(resolution)
    log_p = get_energy(name).log_p(pts.double()).reshape(resolution, resolution)
    return density_image(log_p.numpy(), size)


def loss_frame(history: list[dict], compare: bool = True) -> pd.DataFrame:
    """Long table (step, kl, series) of each fit's own objective as a KL (nats). Before the
    first row, one empty row per series: the plot fixes its colours on the first table."""
    series = LOSS_SERIES if compare else {"energy_fit_kl": LOSS_SERIES["energy_fit_kl"]}
    rows = [{"step": r["step"], "kl": r[key], "series": label}
            for r in history for key, label in series.items() if key in r]
    return pd.DataFrame(rows or [{"step": 0, "kl": float("nan"), "series": label}
                                 for label in series.values()])


def report_frame(history: list[dict]) -> pd.DataFrame:
    """One row per fit from the latest evaluation: KL both ways, ESS, modes covered."""
    last = next((r for r in reversed(history) if "energy_fit_reverse_kl" in r), {})
    rows = []
    for prefix, label in FIT_LABELS.items():
        if f"{prefix}_reverse_kl" not in last:
            continue
        covered = last.get(f"{prefix}_modes_covered")
        rows.append({"fit": label, "KL(q‖p)": round(last[f"{prefix}_reverse_kl"], 3),
                     "KL(p‖q)": round(last[f"{prefix}_forward_kl"], 3),
                     "ESS": round(last[f"{prefix}_ess"], 3),
                     "modes": "—" if covered is None else str(int(covered))})
    return pd.DataFrame(rows, columns=["fit", "KL(q‖p)", "KL(p‖q)", "ESS", "modes"])


def progress_text(history: list[dict], cfg: FlowConfig, seed: int) -> str:
    """'step 120/500 · 3.1 s · E_q[log q − log p̃] -1.234 · KL(q‖p) 0.012 · ESS 0.981 · seed 0',
    each figure from the latest row that has it (the fit report comes every tenth of a run)."""
    last = history[-1] if history else {}
    parts = [f"step {last.get('step', 0)}/{cfg.steps}"]
    if "time_s" in last:
        parts.append(f"{last['time_s']:.1f} s")
    for key, label in (("loss", "E_q[log q − log p̃]"), ("energy_fit_reverse_kl", "KL(q‖p)"),
                       ("energy_fit_ess", "ESS")):
        value = next((r[key] for r in reversed(history) if key in r), None)
        if value is not None:
            parts.append(f"{label} {value:.3f}")
    parts.append(f"seed {seed}")
    return " · ".join(parts)


@dataclass
class EnergyFrame:
    """One update: pictures (PIL while training, PNG paths with the record at the end; None
    before the first), the losses, the report table, the status line, the registered model
    name and the reproducibility record once the run has saved."""

    energy: Image.Image | str
    energy_fit: Image.Image | str | None
    sample_fit: Image.Image | str | None
    losses: pd.DataFrame
    report: pd.DataFrame
    status: str
    model_name: str | None = None
    record: dict | None = None


@dataclass
class EnergyLiveView:
    """``stream_live_run``'s ``progress``, ``finished`` and ``stopped`` for an energy fit; the
    first pictures are the untrained flows (step 0), later ones the latest sample."""

    cfg: FlowConfig
    seed: int
    energy: Image.Image | None = None
    pictures: tuple = (None, None)

    def __post_init__(self) -> None:
        self.energy = energy_image(self.cfg.energy)

    def _frame(self, run: LiveRun, index: int, status: str) -> EnergyFrame:
        if run.samples:
            latest = run.samples[index][1]
            self.pictures = tuple(density_image(latest[k]["logq"], LIVE_IMAGE)
                                  if k in latest else None for k in FIT_LABELS)
        return EnergyFrame(self.energy, *self.pictures,
                           loss_frame(run.history, self.cfg.compare_samples),
                           report_frame(run.history), status)

    def progress(self, run: LiveRun) -> EnergyFrame:
        waiting = run.waiting_note()
        if waiting:
            return self._frame(run, -1, waiting)
        first = self.pictures[0] is None
        return self._frame(run, 0 if first else -1,
                           f"Fitting: {progress_text(run.history, self.cfg, self.seed)}")

    def finished(self, run: LiveRun) -> EnergyFrame:
        """Saved and registered: the pictures become PNGs carrying the record."""
        frame = self._frame(run, -1, f"Done: {progress_text(run.history, self.cfg, self.seed)}"
                            f". Saved as **{run.result}** (pick it above).")
        source = run.summary.get("out_dir") or run.result  # the saved folder, hashed
        record = make_record(FAMILY, run.result, source,
                             {"energy": self.cfg.energy, "view": "energy fit",
                              "config": dataclasses.asdict(self.cfg),
                              "command": cli_command(self.cfg, self.seed)}, self.seed)
        pictures = [frame.energy, frame.energy_fit, frame.sample_fit]
        for i, (picture, what) in enumerate(zip(pictures, ("energy", "fit", "samples-fit"),
                                                strict=True)):
            if picture is not None:
                path = unique_output(FAMILY, f"{what}-{self.cfg.energy}-seed{self.seed}", ".png")
                pictures[i] = str(save_png(picture, record, path))
        frame.energy, frame.energy_fit, frame.sample_fit = pictures
        frame.model_name, frame.record = run.result, record
        return frame

    def stopped(self, run: LiveRun) -> EnergyFrame:
        return self._frame(run, -1, f"Stopped at {progress_text(run.history, self.cfg, self.seed)}"
                           ": nothing was saved.")

