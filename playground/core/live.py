"""Run a training job in a background thread and poll it from a streaming UI handler.

The UI handler is a generator: it starts a ``LiveRun``, then repeatedly yields the latest
metrics/samples until the run ends; the Stop button sets ``cancel``. Model code stays free of
gradio: the run only collects plain values.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_RUNS: dict[str, LiveRun] = {}


@dataclass
class LiveRun:
    """A training function ``fn(on_log, on_sample, cancel) -> result`` running in a thread."""

    fn: Callable[[Callable, Callable, threading.Event], Any]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    history: list[dict] = field(default_factory=list)
    samples: list[tuple[int, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LiveRun:
        _RUNS[self.run_id] = self
        threading.Thread(target=self._target, daemon=True, name=f"train-{self.run_id}").start()
        return self

    def _target(self) -> None:
        try:
            self.result = self.fn(lambda s, row: self.history.append(dict(row)),
                                  lambda s, sample: self.samples.append((s, sample)), self.cancel)
        except BaseException as exc:  # surfaced to the UI by poll()
            self.error = exc
        finally:
            self.done.set()
            _RUNS.pop(self.run_id, None)

    def poll(self, every_s: float = 0.5) -> Iterator[LiveRun]:
        """Yield self every ``every_s`` seconds while running, and once more at the end."""
        while not self.done.wait(every_s):
            yield self
        yield self


def cancel_run(run_id: str | None) -> bool:
    """Ask the run with ``run_id`` to stop after its current step; False if none is running."""
    run = _RUNS.get(run_id or "")
    if run is None:
        return False
    run.cancel.set()
    return True


def wait_all(timeout: float = 10.0) -> None:
    """For tests: wait for every live run to end."""
    end = time.monotonic() + timeout
    for run in list(_RUNS.values()):
        run.done.wait(max(0.0, end - time.monotonic()))


def train_and_register(loop, task, family: str, label: str, **entry_kwargs) -> Callable:
    """The ``fn`` of a LiveRun that trains ``task`` and, unless cancelled, registers the saved
    folder as model ``label`` of ``family`` (selectable in the same session); returns the label."""
    from pathlib import Path

    from playground.core import registry
    from playground.core.training import train_loop

    def fn(on_log, on_sample, cancel):
        result = train_loop(loop, task, on_log=on_log, on_sample=on_sample, cancel=cancel)
        if result.out_dir is None:
            return None
        registry.register(registry.ModelEntry(label, family, path=Path(result.out_dir),
                                              description="trained in this session",
                                              **entry_kwargs))
        return label
    return fn
