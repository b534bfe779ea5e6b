"""In-browser training: each run in its own worker process, one user's run never slows the rest.

A family's ``live.py`` validates the user's settings in the request (bad input fails at once),
then calls ``start_live_run`` with the name of a module-level builder, ``"pkg.mod:function"``,
and picklable keyword arguments. The worker process imports the builder, which returns
``(LoopConfig, TrainTask)``, and runs the shared ``train_loop``; metrics and samples come back
over a pipe. The worker runs at a lower CPU priority with few threads, so generation requests
keep their speed; a bounded pool (``TRAIN_SLOTS``) runs the rest in turn, and a queued run
knows its place. Stopping, a dropped connection or the end of the session kills the worker at
once: nothing is saved. A finished run is registered as a model of the session that trained
it (``registry`` shows it to that session only).

Model code stays free of gradio: the tab streams a ``LiveRun`` with ``ui.stream_live_run``.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.core import sessions
from playground.core.errors import UserInputError

log = logging.getLogger("playground")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def shared_deployment() -> bool:
    """Many users on one server (on by default on a Space): step caps and a time budget."""
    default = "1" if os.environ.get("SPACE_ID") else "0"
    return os.environ.get("PLAYGROUND_SHARED", default).lower() in ("1", "true", "yes")


TRAIN_SLOTS = max(1, int(_env_float("PLAYGROUND_TRAIN_SLOTS", 1)))
TRAIN_THREADS = max(1, int(_env_float("PLAYGROUND_TRAIN_THREADS", 1)))
TRAIN_NICE = int(_env_float("PLAYGROUND_TRAIN_NICE", 10))
MAX_WORKER_RSS_MB = _env_float("PLAYGROUND_TRAIN_MAX_RSS_MB", 3072)


def run_budget_s() -> float:
    """Wall-clock seconds one run may train (0 = no limit): the run then ends and is saved."""
    return _env_float("PLAYGROUND_TRAIN_BUDGET_S", 300 if shared_deployment() else 0)


def step_cap(local_max: int, shared_max: int) -> int:
    """The most steps a user may ask for: ``shared_max`` on a shared deployment."""
    return min(local_max, shared_max) if shared_deployment() else local_max


class _Slots:
    """A first-come-first-served pool of training slots that knows each waiter's place."""

    def __init__(self, size: int) -> None:
        self.size, self.busy, self.waiting = size, 0, []
        self.cond = threading.Condition()

    def position(self, run_id: str) -> int | None:
        with self.cond:
            return self.waiting.index(run_id) + 1 if run_id in self.waiting else None

    def acquire(self, run_id: str, cancel: threading.Event) -> bool:
        with self.cond:
            self.waiting.append(run_id)
            while not cancel.is_set() and (self.busy >= self.size or self.waiting[0] != run_id):
                self.cond.wait(0.2)
            self.waiting.remove(run_id)
            if cancel.is_set():
                self.cond.notify_all()
                return False
            self.busy += 1
            return True

    def release(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()


SLOTS = _Slots(TRAIN_SLOTS)
_RUNS: dict[str, LiveRun] = {}
_RUNS_LOCK = threading.Lock()


@dataclass
class LiveRun:
    """One training run of one session; the tab polls it (``poll``) and may ``stop`` it."""

    family: str
    builder: str  # "package.module:function" -> (LoopConfig, TrainTask), run in the worker
    kwargs: dict
    label: str  # the model name it is registered under when it finishes
    out_dir: Path
    entry_extra: dict = field(default_factory=dict)
    description: str = "trained in this session"
    owner: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    history: list[dict] = field(default_factory=list)
    samples: list[tuple[int, Any]] = field(default_factory=list)
    result: str | None = None  # the registered model name; None if stopped or failed
    summary: dict = field(default_factory=dict)  # steps, wall_time_s, stopped_by_budget
    error: BaseException | None = None
    state: str = "queued"  # queued -> running -> done | stopped | failed
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None

    def start(self) -> LiveRun:
        with _RUNS_LOCK:
            _RUNS[self.run_id] = self
        threading.Thread(target=self._supervise, daemon=True,
                         name=f"train-{self.run_id}").start()
        return self

    @property
    def queue_position(self) -> int | None:
        """1 = next to start; None once running."""
        return SLOTS.position(self.run_id) if self.state == "queued" else None

    def waiting_note(self) -> str:
        """What a queued user waits for, or '' once the run has started."""
        position = self.queue_position
        if position is None:
            return ""
        ahead = position - 1 + SLOTS.busy
        return (f"Queued: {ahead} training run(s) ahead of yours; this server trains "
                f"{SLOTS.size} run(s) at a time so that everyone's generation stays fast.")

    def stop(self) -> None:
        """Cancel now: a queued run never starts; a running worker is killed, nothing saved."""
        self.cancel.set()

    def poll(self, every_s: float = 0.5) -> Iterator[LiveRun]:
        """Yield self every ``every_s`` seconds while queued or running, and once at the end."""
        while not self.done.wait(every_s):
            yield self
        yield self

    # ---- the supervisor thread -------------------------------------------------------

    def _supervise(self) -> None:
        try:
            if not SLOTS.acquire(self.run_id, self.cancel):
                self.state = "stopped"
                return
            try:
                self.state = "running"
                self._run_worker()
            finally:
                SLOTS.release()
        except BaseException as exc:  # surfaced to the UI by the tab
            self.error, self.state = exc, "failed"
        finally:
            self.done.set()
            with _RUNS_LOCK:
                _RUNS.pop(self.run_id, None)

    def _run_worker(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_worker_main, daemon=True, name=f"train-{self.run_id}",
                              args=(self.builder, dict(self.kwargs, out_dir=str(self.out_dir)),
                                    child, TRAIN_THREADS, TRAIN_NICE, run_budget_s()))
        process.start()
        child.close()
        self.pid = process.pid
        finished = False
        try:
            while not finished:
                if self.cancel.is_set():
                    break
                if parent.poll(0.2):
                    try:
                        finished = self._handle(pickle.loads(parent.recv_bytes()))
                    except EOFError:
                        break
                elif not process.is_alive():
                    break
                elif _rss_mb(process.pid) > MAX_WORKER_RSS_MB:
                    raise UserInputError(f"Training used more than {MAX_WORKER_RSS_MB:.0f} MB "
                                         "of memory and was stopped; try fewer steps or a "
                                         "smaller model.")
        finally:
            _kill(process)
            parent.close()
        if self.cancel.is_set() and not finished:
            self.state = "stopped"
        elif not finished and self.error is None:
            raise RuntimeError(f"the training worker ended unexpectedly (exit code "
                               f"{process.exitcode})")

    def _handle(self, message: tuple) -> bool:
        kind = message[0]
        if kind == "log":
            self.history.append(message[1])
        elif kind == "sample":
            self.samples.append((message[1], message[2]))
        elif kind == "error":
            _, type_name, text = message
            self.error = (UserInputError(text) if type_name == "UserInputError"
                          else RuntimeError(f"{type_name}: {text}"))
            self.state = "failed"
            return True
        elif kind == "done":
            self.summary = message[1]
            if self.summary.get("cancelled") or not self.summary.get("out_dir"):
                self.state = "stopped"
                return True
            from playground.core import registry

            registry.register(registry.ModelEntry(
                self.label, self.family, path=Path(self.summary["out_dir"]),
                description=self.description, extra=dict(self.entry_extra), owner=self.owner))
            self.result, self.state = self.label, "done"
            return True
        return False


def _rss_mb(pid: int | None) -> float:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _kill(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)


def _worker_main(builder: str, kwargs: dict, conn, threads: int, nice: int,
                 budget_s: float) -> None:
    """The worker process: build the run, train, report over ``conn``; runs under spawn."""
    def send(*message) -> None:
        conn.send_bytes(pickle.dumps(message))

    try:
        if nice:
            os.nice(nice)
        import torch

        torch.set_num_threads(threads)
        from playground.core.training import train_loop

        module, _, function = builder.partition(":")
        loop, task = getattr(importlib.import_module(module), function)(**kwargs)
        loop.progress = False
        if budget_s and (not loop.time_budget_s or loop.time_budget_s > budget_s):
            loop.time_budget_s = budget_s
        result = train_loop(loop, task, on_log=lambda s, row: send("log", dict(row)),
                            on_sample=lambda s, sample: send("sample", s, sample))
        send("done", {"steps": result.steps, "wall_time_s": result.wall_time_s,
                      "cancelled": result.cancelled, "stopped_by_budget": result.stopped_by_budget,
                      "out_dir": str(result.out_dir) if result.out_dir else None})
    except BaseException as exc:  # reported to the parent, which raises it in the tab
        send("error", type(exc).__name__, str(exc)[:2000])
    finally:
        conn.close()


def start_live_run(family: str, builder: str, kwargs: dict, *, label: str,
                   entry_extra: dict | None = None,
                   description: str = "trained in this session") -> LiveRun:
    """Queue a training run for the current session and return it (already started).

    ``label`` may contain ``{id}`` (the first six characters of the run id), so two runs with
    the same settings get different names. The builder receives ``out_dir`` (inside the
    session's folder, deleted with the session) beside ``kwargs``.
    """
    run_id = uuid.uuid4().hex[:12]
    owner = sessions.current_session()
    out_dir = sessions.session_runs_dir(owner) / f"{family}-{run_id}"
    run = LiveRun(family, builder, kwargs, label.format(id=run_id[:6]), out_dir,
                  entry_extra=entry_extra or {}, description=description, owner=owner,
                  run_id=run_id)
    return run.start()


def cancel_run(run_id: str | None) -> bool:
    """Stop the current session's run ``run_id``; False if it has none by that id."""
    with _RUNS_LOCK:
        run = _RUNS.get(run_id or "")
    if run is None or run.owner != sessions.current_session():
        return False
    run.stop()
    return True


def _cancel_session_runs(session: str) -> None:
    with _RUNS_LOCK:
        runs = [r for r in _RUNS.values() if r.owner == session]
    for run in runs:
        run.stop()
    for run in runs:  # the folder is deleted next: let the workers die first
        run.done.wait(5)


sessions.on_session_end(_cancel_session_runs)


def active_runs() -> list[LiveRun]:
    with _RUNS_LOCK:
        return list(_RUNS.values())


def wait_all(timeout: float = 10.0) -> None:
    """For tests: wait for every live run to end."""
    end = time.monotonic() + timeout
    for run in active_runs():
        run.done.wait(max(0.0, end - time.monotonic()))
