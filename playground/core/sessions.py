"""Whose request is this? One browser tab (or one API client) is one Gradio session.

What a user trains or uploads belongs to their session: the registry lists and resolves a
session's models only for that session, its files live under the session's folders, and
``end_session`` (Gradio's ``unload``, or the idle sweep) cancels its runs and deletes them.
Model code stays free of gradio: the tab layer sets the session with ``use_session``; the
rest reads ``current_session()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

log = logging.getLogger("playground")
_CURRENT: ContextVar[str | None] = ContextVar("playground_session", default=None)
_LAST_SEEN: dict[str, float] = {}
_ENDED: dict[str, float] = {}  # ended session -> when its output files may go (monotonic)
_ON_END: list[Callable[[str], None]] = []
_LOCK = threading.Lock()

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_ROOT = Path(os.environ.get("PLAYGROUND_RUNS_DIR") or REPO_ROOT / "runs")
OUTPUT_ROOT = Path(os.environ.get("PLAYGROUND_OUTPUT_DIR")
                   or Path(tempfile.gettempdir()) / "playground-outputs")
SESSION_IDLE_S = float(os.environ.get("PLAYGROUND_SESSION_IDLE_S", "7200"))
OUTPUT_MAX_AGE_S = float(os.environ.get("PLAYGROUND_OUTPUT_MAX_AGE_S", "3600"))
OUTPUT_GRACE_S = float(os.environ.get("PLAYGROUND_OUTPUT_GRACE_S", "120"))


def current_session() -> str | None:
    """The session of the request being served (None: a script, a test, the CLI)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_session(session: str | None) -> Iterator[None]:
    """Serve the code inside as ``session`` (the tab layer wraps every handler call)."""
    token = _CURRENT.set(session)
    if session:
        with _LOCK:
            _LAST_SEEN[session] = time.monotonic()
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _safe(session: str) -> str:
    return "".join(c for c in session if c.isalnum() or c in "-_")[:64] or "anonymous"


def session_runs_dir(session: str | None = None) -> Path:
    """Where the session's trained models go: ``runs/sessions/<session>``, or ``runs/local``
    outside a session."""
    session = session if session is not None else current_session()
    return RUNS_ROOT / ("sessions/" + _safe(session) if session else "local")


def output_dir(family: str, session: str | None = None) -> Path:
    """A folder for the session's output files (PNG, GIF) of ``family``, created on demand."""
    session = session if session is not None else current_session()
    folder = OUTPUT_ROOT / (_safe(session) if session else "shared") / family
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def unique_output(family: str, stem: str, suffix: str) -> Path:
    """A fresh file name for one output: never shared, never rewritten while it is served."""
    import uuid

    safe_stem = "".join(c for c in stem if c.isalnum() or c in "-_.")[:80] or "output"
    return output_dir(family) / f"{safe_stem}-{uuid.uuid4().hex[:10]}{suffix}"


def on_session_end(callback: Callable[[str], None]) -> None:
    """Register ``callback(session)`` to run when a session ends (runs, registry entries)."""
    _ON_END.append(callback)


def end_session(session: str | None, keep_outputs_s: float = 0.0) -> None:
    """Cancel and delete everything the session owns; safe to call twice.

    ``keep_outputs_s``: leave its output files that long (``sweep`` deletes them after,
    unless the session came back). Gradio's ``unload`` fires when the tab's heartbeat
    connection drops, which a client that is still waiting for a result can see too (the
    heartbeat of ``gradio_client`` ends on a 20 s read timeout under heavy load): a request in
    flight must still find the file it wrote when Gradio copies it out."""
    if not session:
        return
    for callback in list(_ON_END):
        try:
            callback(session)
        except Exception:  # one failing cleanup must not keep the others from running
            log.exception("session cleanup failed")
    shutil.rmtree(RUNS_ROOT / "sessions" / _safe(session), ignore_errors=True)
    with _LOCK:
        _LAST_SEEN.pop(session, None)
        if keep_outputs_s > 0:
            _ENDED[session] = time.monotonic() + keep_outputs_s
    if keep_outputs_s <= 0:
        shutil.rmtree(OUTPUT_ROOT / _safe(session), ignore_errors=True)
    log.info("session %s ended: runs cancelled and deleted, output files %s", _safe(session),
             f"kept {keep_outputs_s:.0f} s" if keep_outputs_s > 0 else "deleted")


def sweep(now: float | None = None) -> dict[str, int]:
    """End sessions idle for longer than ``SESSION_IDLE_S`` and delete output files older than
    ``OUTPUT_MAX_AGE_S``, and the output folders of sessions ended more than their grace ago
    (``end_session(keep_outputs_s=...)``); returns what was removed (for logs and tests)."""
    now = time.monotonic() if now is None else now
    with _LOCK:
        idle = [s for s, seen in _LAST_SEEN.items() if now - seen > SESSION_IDLE_S]
    for session in idle:
        end_session(session)
    with _LOCK:
        due = [s for s, at in _ENDED.items() if now >= at]
        for session in due:
            del _ENDED[session]
        due = [s for s in due if s not in _LAST_SEEN]  # came back: the idle sweep decides
    for session in due:
        shutil.rmtree(OUTPUT_ROOT / _safe(session), ignore_errors=True)
    removed, cutoff = 0, time.time() - OUTPUT_MAX_AGE_S
    if OUTPUT_ROOT.exists():
        for path in OUTPUT_ROOT.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return {"sessions": len(idle), "files": removed, "ended_outputs": len(due)}


_SWEEPER: threading.Thread | None = None


def start_sweeper(every_s: float = 300.0) -> None:
    """Run ``sweep`` every ``every_s`` seconds in a daemon thread (once per process)."""
    global _SWEEPER
    if _SWEEPER is not None:
        return

    def loop() -> None:
        while True:
            time.sleep(every_s)
            try:
                sweep()
            except Exception:
                log.exception("sweep failed")
    _SWEEPER = threading.Thread(target=loop, daemon=True, name="playground-sweeper")
    _SWEEPER.start()
