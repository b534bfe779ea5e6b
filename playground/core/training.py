"""One training loop for every family, on ``accelerate``.

CPU or CUDA (mixed precision on CUDA), DDP through ``accelerate launch``; tqdm progress (which
``gr.Progress(track_tqdm=True)`` mirrors in the browser); metrics to CSV/JSON; periodic samples;
cancel; checkpoint + resume (``accelerator.save_state``); atomic final save.

A resumed run is the uninterrupted run: the checkpoint holds the models, optimizers, schedulers
and RNG states (accelerate's) and the state of the steps' own generator (``StepContext
.generator``), and the batch stream is fast-forwarded past the batches the finished steps used
(one per step; every family's batches are cheap to draw). A checkpoint written before the
generator's state was kept restarts that generator.

A family supplies a ``TrainTask``: its models and optimizers, an iterator of batches, a ``step``
function doing one optimisation step, and a ``save`` function writing the HF-format artefact.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from playground.core.atomic import atomic_save_dir
from playground.core.device import get_device, mixed_precision
from playground.core.errors import UserInputError


@dataclass
class LoopConfig:
    """Settings of the loop itself (the model's settings live in the family's config)."""

    max_steps: int = 1000
    out_dir: str | None = None  # final artefact (HF format); None = do not save
    checkpoint_dir: str | None = None  # resume state; default "<out_dir>-ckpt"
    checkpoint_every: int = 0  # steps; 0 = only at the end
    checkpoints: bool = True  # False: no resume state at all (in-browser runs)
    log_every: int = 10
    sample_every: int = 0
    sample_at_start: bool = False  # also sample the untrained model (step 0) on a fresh start
    resume: bool = False
    seed: int = 0
    device: str | None = None  # None = auto (cuda > mps > cpu); "cpu" forces the CPU
    mixed_precision: str | None = None  # None = auto: bf16/fp16 on CUDA, none on CPU
    progress: bool = True
    time_budget_s: float = 0.0  # > 0: end (and save) after this much training wall time
    snapshot_every: int = 0  # > 0: also save the model folder every N steps under
    # "<out_dir>-snapshots/stepNNNNNN" (kept, for weight averaging: core/averaging.py)

    def snapshot_dir(self, step: int) -> Path | None:
        if not (self.snapshot_every and self.out_dir):
            return None
        return Path(f"{self.out_dir}-snapshots") / f"step{step:06d}"

    def resolved_checkpoint_dir(self) -> Path | None:
        if not self.checkpoints:
            return None
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir)
        return Path(f"{self.out_dir}-ckpt") if self.out_dir else None


@dataclass
class StepContext:
    accelerator: Any
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    step: int
    generator: torch.Generator  # per-process CPU generator for data/noise in the step


@dataclass
class TrainTask:
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    batches: Iterable  # yields batches forever (or a DataLoader, cycled)
    step: Callable[[StepContext, Any], dict[str, float]]
    save: Callable[[dict[str, torch.nn.Module], Path], None]  # unwrapped models -> folder
    schedulers: dict[str, Any] = field(default_factory=dict)
    sample: Callable[[dict[str, torch.nn.Module], int], Any] | None = None
    # (unwrapped models in eval mode, step) -> metrics logged in that step's row
    evaluate: Callable[[dict[str, torch.nn.Module], int], dict[str, float]] | None = None
    summary: dict = field(default_factory=dict)  # written beside the artefact (config, data)


@dataclass
class TrainResult:
    steps: int
    history: list[dict]
    wall_time_s: float
    cancelled: bool
    out_dir: Path | None
    samples: list = field(default_factory=list)
    stopped_by_budget: bool = False  # ended at ``time_budget_s`` before ``max_steps``

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}


Callback = Callable[[int, dict], None]


def _cycle(batches: Iterable) -> Iterator:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("training data yielded no batches")


def make_accelerator(cfg: LoopConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    device = get_device(cfg.device)
    if PartialState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state(True)  # a fresh run in the same (UI) process
    mp = cfg.mixed_precision or mixed_precision(device)
    return Accelerator(cpu=device.type == "cpu", mixed_precision=mp)


def _write_metrics(log_dir: Path, history: list[dict]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    with open(log_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    (log_dir / "metrics.json").write_text(json.dumps(history))


def _generator_file(state_dir: Path, acc) -> Path:
    return state_dir / f"step_generator_{acc.process_index}.safetensors"


def _save_checkpoint(acc, ckpt_dir: Path, step: int, history: list[dict],
                     names: list[str], gen: torch.Generator) -> None:
    from safetensors.torch import save_file

    acc.wait_for_everyone()
    tmp = ckpt_dir.parent / f".{ckpt_dir.name}.saving"
    acc.save_state(str(tmp / "state"))  # every process writes its RNG state
    save_file({"state": gen.get_state()}, str(_generator_file(tmp / "state", acc)))
    acc.wait_for_everyone()  # all ranks' files are written before the main one moves them
    if acc.is_main_process:
        # the model names in prepare order: accelerate numbers the weight files by position
        (tmp / "progress.json").write_text(json.dumps({"step": step, "models": names}))
        _write_metrics(tmp, history)
        atomic_save_dir(ckpt_dir, lambda d: _move_contents(tmp, d))
    acc.wait_for_everyone()


def _move_contents(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        item.rename(dst / item.name)
    src.rmdir()


def checkpoint_states(ckpt_dir: str | Path, names: list[str] | None = None
                      ) -> dict[str, dict[str, torch.Tensor]]:
    """The weights of every model in a checkpoint, keyed by the ``TrainTask.models`` name.

    accelerate writes ``model.safetensors``, ``model_1.safetensors``, ... in prepare order; the
    loop records that order in ``progress.json``. ``names`` is for checkpoints written before it
    did (give the task's model names in order).
    """
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    progress = json.loads((ckpt_dir / "progress.json").read_text())
    names = progress.get("models") or names
    if not names:
        raise ValueError(f"{ckpt_dir} does not record its model names; pass them")
    files = ["model.safetensors"] + [f"model_{i}.safetensors" for i in range(1, len(names))]
    return {name: load_file(str(ckpt_dir / "state" / f)) for name, f in zip(names, files,
                                                                             strict=True)}


def checkpoint_step(ckpt_dir: str | Path) -> int:
    """The last completed step saved in a checkpoint folder."""
    return int(json.loads((Path(ckpt_dir) / "progress.json").read_text())["step"])


def _load_checkpoint(acc, ckpt_dir: Path, gen: torch.Generator) -> tuple[int, list[dict]]:
    from safetensors.torch import load_file

    acc.load_state(str(ckpt_dir / "state"))
    saved = _generator_file(ckpt_dir / "state", acc)
    if saved.exists():
        gen.set_state(load_file(str(saved))["state"])
    step = json.loads((ckpt_dir / "progress.json").read_text())["step"]
    metrics = ckpt_dir / "metrics.json"
    return step, json.loads(metrics.read_text()) if metrics.exists() else []


def train_loop(cfg: LoopConfig, task: TrainTask, *, on_log: Callback | None = None,
               on_sample: Callback | None = None,
               cancel: threading.Event | None = None) -> TrainResult:
    """Run ``task`` for ``cfg.max_steps`` steps; see the module docstring."""
    for name, low in (("checkpoint_every", 0), ("snapshot_every", 0), ("log_every", 1)):
        if getattr(cfg, name) < low:  # a negative interval acts on every step; 0 logs divide by 0
            raise UserInputError(f"{name.replace('_', ' ')} must be {low} or more steps, got "
                                 f"{getattr(cfg, name)}.")
    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed + acc.process_index)  # weight init happened before; data/noise
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index)
    names = list(task.models)
    prepared = acc.prepare(*task.models.values(), *task.optimizers.values(),
                           *task.schedulers.values())
    n_m, n_o = len(task.models), len(task.optimizers)
    models = dict(zip(names, prepared[:n_m], strict=True))
    optimizers = dict(zip(task.optimizers, prepared[n_m:n_m + n_o], strict=True))
    schedulers = dict(zip(task.schedulers, prepared[n_m + n_o:], strict=True))
    ckpt_dir = cfg.resolved_checkpoint_dir()
    start, history = 0, []
    if cfg.resume and ckpt_dir and (ckpt_dir / "progress.json").exists():
        start, history = _load_checkpoint(acc, ckpt_dir, gen)
    batches = _cycle(task.batches)
    for _ in range(start):  # the batches the checkpoint's steps used
        next(batches)
    bar = tqdm(total=cfg.max_steps, initial=start, desc="training", unit="step",
               disable=not (cfg.progress and acc.is_main_process))
    t0, cancelled, samples, running = time.perf_counter(), False, [], {}
    step, by_budget = start, False
    if task.sample and cfg.sample_at_start and start == 0:
        _take_sample(task, models, acc, 0, samples, on_sample)
    for step in range(start + 1, cfg.max_steps + 1):
        if cancel is not None and cancel.is_set():
            cancelled, step = True, step - 1
            break
        if cfg.time_budget_s and time.perf_counter() - t0 > cfg.time_budget_s:
            by_budget, step = True, step - 1
            break
        for m in models.values():
            m.train()
        ctx = StepContext(acc, models, optimizers, schedulers, step, gen)
        for key, value in task.step(ctx, next(batches)).items():
            running.setdefault(key, []).append(float(value))
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            row = _log_row(step, running, t0, acc, models, task)
            running = {}
            history.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("step", "time_s")})
            if on_log:
                on_log(step, row)
            if not all(math.isfinite(v) for v in row.values()):
                raise FloatingPointError(f"training diverged at step {step}: {row}")
        if task.sample and cfg.sample_every and step % cfg.sample_every == 0:
            _take_sample(task, models, acc, step, samples, on_sample)
        if ckpt_dir and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            _save_checkpoint(acc, ckpt_dir, step, history, names, gen)
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            _save_snapshot(cfg, task, acc, models, step)
    bar.close()
    wall = time.perf_counter() - t0
    if by_budget:
        task.summary = {**task.summary, "stopped_by_time_budget_s": cfg.time_budget_s}
    out = _finish(cfg, task, acc, models, ckpt_dir, step, history, wall, cancelled, gen)
    return TrainResult(step, history, wall, cancelled, out, samples, by_budget)


def _save_snapshot(cfg, task, acc, models, step: int) -> None:
    """The model folder as it is at ``step`` (written atomically; a resumed run that passes the
    step again rewrites it)."""
    folder = cfg.snapshot_dir(step)
    if folder is not None and acc.is_main_process:
        unwrapped = {k: acc.unwrap_model(m) for k, m in models.items()}
        atomic_save_dir(folder, lambda tmp: task.save(unwrapped, tmp))
    acc.wait_for_everyone()


def _take_sample(task, models, acc, step, samples, on_sample) -> None:
    sample = _with_eval(models, acc, lambda m: task.sample(m, step))
    samples.append((step, sample))
    if on_sample:
        on_sample(step, sample)


def _with_eval(models, acc, fn):
    unwrapped = {k: acc.unwrap_model(m) for k, m in models.items()}
    for m in unwrapped.values():
        m.eval()
    with torch.no_grad():
        return fn(unwrapped)


def _log_row(step, running, t0, acc, models, task) -> dict:
    row = {"step": step, "time_s": round(time.perf_counter() - t0, 3)}
    row.update({k: sum(v) / len(v) for k, v in running.items()})
    if task.evaluate:
        row.update(_with_eval(models, acc, lambda m: task.evaluate(m, step)))
    return row


def _finish(cfg, task, acc, models, ckpt_dir, step, history, wall, cancelled,
            gen) -> Path | None:
    if ckpt_dir and step > 0:
        _save_checkpoint(acc, ckpt_dir, step, history, list(task.models), gen)
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out is not None and acc.is_main_process and not cancelled:
        unwrapped = {k: acc.unwrap_model(m) for k, m in models.items()}
        summary = {"steps": step, "wall_time_s": round(wall, 1), "device": str(acc.device),
                   "num_processes": acc.num_processes, "loop": asdict(cfg),
                   "final_metrics": history[-1] if history else {}, **task.summary}

        def write(tmp: Path) -> None:
            task.save(unwrapped, tmp)
            (tmp / "training_summary.json").write_text(json.dumps(summary, indent=1,
                                                                  default=str))
        atomic_save_dir(out, write)
    acc.wait_for_everyone()
    return out if not cancelled else None


def export_checkpoint(ckpt_dir: str | Path, models: dict[str, torch.nn.Module],
                      save: Callable[[dict[str, torch.nn.Module], Path], None],
                      out: str | Path, *, names: list[str] | None = None,
                      summary: dict | None = None) -> int:
    """Write the HF-format artefact of a checkpoint (a run stopped early, or the best so far).

    ``models`` are freshly built modules keyed like the run's ``TrainTask.models`` (only those
    the artefact needs); each gets the checkpoint's weights of the same name, then ``save``
    (the task's own save function) writes ``out`` atomically with a ``training_summary.json``.
    Returns the checkpoint's step.
    """
    states = checkpoint_states(ckpt_dir, names)
    for name, module in models.items():
        if name not in states:
            raise KeyError(f"checkpoint {ckpt_dir} has no model {name!r}; it has {list(states)}")
        module.load_state_dict(states[name])
    step = checkpoint_step(ckpt_dir)
    info = {"steps": step, "exported_from_checkpoint": str(ckpt_dir), **(summary or {})}

    def write(tmp: Path) -> None:
        save(models, tmp)
        (tmp / "training_summary.json").write_text(json.dumps(info, indent=1, default=str))
    atomic_save_dir(Path(out), write)
    return step
