"""Stop a running generation: one flag per request, found by the session that started it.

The tab's handler opens ``running(session)`` around the pipeline call and passes the flag's
path down; the step callback asks ``is_stop_requested(path)`` after every denoising step; the
Stop button calls ``request_stop(session)``, which sets the flags of that session's runs only.

The flag is a file, not an in-memory event: the Stop click is served by the app's process,
while on ZeroGPU the pipeline runs in a forked worker process that would never see an event
set after the fork. Both see the file; checking it costs one ``stat`` per step.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from playground.core import sessions

FAMILY = "txt2img"
_LOCK = threading.Lock()
_RUNNING: dict[str | None, set[Path]] = {}  # session -> stop-flag paths of its running requests


@contextlib.contextmanager
def running(session: str | None) -> Iterator[str]:
    """Register one request of ``session``; yields its stop flag's path (not yet set)."""
    path = sessions.unique_output(FAMILY, "stop", ".flag")
    with _LOCK:
        _RUNNING.setdefault(session, set()).add(path)
    try:
        yield str(path)
    finally:
        with _LOCK:
            mine = _RUNNING.get(session, set())
            mine.discard(path)
            if not mine:
                _RUNNING.pop(session, None)
        path.unlink(missing_ok=True)


def is_stop_requested(path: str | None) -> bool:
    return bool(path) and os.path.exists(path)


def request_stop(session: str | None) -> int:
    """Set the stop flag of every running request of ``session``; returns how many."""
    with _LOCK:
        paths = list(_RUNNING.get(session, ()))
    stopped = 0
    for path in paths:
        try:
            path.touch()
            stopped += 1
        except OSError:  # the session's folder is gone: it ended, its runs with it
            continue
    return stopped


def running_count(session: str | None) -> int:
    with _LOCK:
        return len(_RUNNING.get(session, ()))
