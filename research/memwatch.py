"""Where does the server's memory go under load? Runs ``app.py`` in this process and, every
``--every`` seconds, appends one JSON line to ``OUT/trace.jsonl`` (RSS, gc-tracked object
counts by type, the sizes of Gradio's per-session and per-event records) and, with
``--frames`` > 0, dumps a ``tracemalloc`` snapshot to ``OUT/snap-NN.pickle`` (tracing
starts on SIGUSR1).

    python -m research.memwatch --out DIR [--frames 10] [--every 60] -- --port 7860  (app.py's args)
    python -m research.memwatch --compare DIR/snap-02.pickle DIR/snap-10.pickle [--top 25]

``python -m bench.load --memwatch DIR`` starts the server this way. Diagnostics only: the
product never imports this module.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_BLOCKS: list = []


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_mb() -> dict[str, float]:
    """glibc's heap: bytes in use (small chunks + mmapped big ones) and free but kept."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"malloc_used_mb": round((info.uordblks + info.hblkhd) / 2**20, 1),
            "malloc_free_mb": round(info.fordblks / 2**20, 1),
            "malloc_mmapped_mb": round(info.hblkhd / 2**20, 1)}


def mappings_mb() -> dict[str, float]:
    """RSS by kind of mapping: the brk heap, anonymous mmaps (big malloc chunks, pymalloc
    arenas, thread stacks, torch), files (libraries)."""
    out = {"heap": 0.0, "anon": 0.0, "file": 0.0, "anon_maps": 0}
    kind = "file"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            name = head[5] if len(head) > 5 else ""
            kind = "heap" if name == "[heap]" else "anon" if not name or name.startswith(
                "[anon") or name == "[stack]" else "file"
            out["anon_maps"] += kind == "anon"
        elif line.startswith("Rss:"):
            out[kind] += int(head[1]) / 1024
    return {f"rss_{k}": round(v, 1) for k, v in out.items()}


def _running_blocks():
    if not _BLOCKS:
        import gradio as gr

        found = next((o for o in gc.get_objects() if type(o) is gr.Blocks
                      and o.__dict__.get("is_running")), None)
        if found is not None:
            _BLOCKS.append(found)
    return _BLOCKS[0] if _BLOCKS else None


def gradio_records(blocks) -> dict[str, int]:
    """How many entries Gradio keeps per session / per event / per served file."""
    out: dict[str, int] = {}
    if blocks is None:
        return out
    holder = getattr(blocks, "state_holder", None)
    if holder is not None:
        out["state_holder.sessions"] = len(holder.session_data)
        states = list(holder.session_data.values())
        out["state_holder.state_values"] = sum(len(s.state_data) for s in states)
        # copies of components a session holds beyond the app's own (the ui.py fix: 0)
        out["state_holder.extra_blocks"] = sum(
            sum(key not in blocks.blocks for key in list(s.blocks_config.blocks))
            for s in states)
    queue = getattr(blocks, "_queue", None)
    if queue is not None:
        for name in ("event_ids_to_events", "pending_event_ids_session",
                     "pending_messages_per_session", "event_analytics"):
            value = getattr(queue, name, None)
            if value is not None:
                out[f"queue.{name}"] = len(value)
    app = getattr(blocks, "server_app", None)
    if app is not None:
        out["app.iterators"] = len(getattr(app, "iterators", {}))
    out["blocks.temp_files"] = sum(len(getattr(b, "temp_files", ())) for b in
                                   list(blocks.blocks.values()))
    for name in ("pending_streams", "pending_diff_streams", "upload_file_set"):
        value = getattr(blocks, name, None)
        if value is not None:
            out[f"blocks.{name}"] = len(value)
    return out


def playground_records() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        from playground.core import registry, sessions

        out["sessions._LAST_SEEN"] = len(sessions._LAST_SEEN)
        out["sessions._ON_END"] = len(sessions._ON_END)
        for name in dir(registry):
            value = getattr(registry, name)
            if isinstance(value, (dict, list, set)) and name.startswith("_"):
                out[f"registry.{name}"] = len(value)
    except Exception as exc:  # diagnostics must never stop the server
        out["error"] = repr(exc)[:80]
    return out


def sample(out: Path, index: int, t0: float, frames: int) -> None:
    gc.collect()
    types = Counter(type(o).__name__ for o in gc.get_objects())
    row = {"minute": round((time.monotonic() - t0) / 60, 2), "rss_mb": round(rss_mb(), 1),
           **malloc_mb(), **mappings_mb(), "threads": threading.active_count(),
           "py_blocks": sys.getallocatedblocks(),
           "gc_objects": sum(types.values()), "types": dict(types.most_common(40)),
           **gradio_records(_running_blocks()), **playground_records()}
    if frames:
        traced, _ = tracemalloc.get_traced_memory()
        row["traced_mb"] = round(traced / 2**20, 1)
        tracemalloc.take_snapshot().dump(str(out / f"snap-{index:02d}.pickle"))
    with open(out / "trace.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")


def watch(out: Path, every_s: float, frames: int) -> None:
    """Sample every ``every_s`` s. With ``frames``, tracing starts on SIGUSR1 (``bench.load``
    sends it when its warm-up ends): tracing the imports and model loads made them minutes
    long, and only what is allocated under load and kept matters here."""
    while _running_blocks() is None:
        time.sleep(5)
    t0, index = time.monotonic(), 0
    while True:
        time.sleep(every_s)
        index += 1
        try:
            sample(out, index, t0, frames if tracemalloc.is_tracing() else 0)
        except Exception as exc:
            (out / "errors.txt").open("a").write(f"{index}: {exc!r}\n")


def _start_tracing(frames: int, out: Path) -> None:
    def handler(signum, frame) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
            with open(out / "trace.jsonl", "a") as handle:
                handle.write(json.dumps({"tracing_from_rss_mb": round(rss_mb(), 1)}) + "\n")
    signal.signal(signal.SIGUSR1, handler)


def compare(first: str, second: str, top: int, key: str) -> None:
    a, b = tracemalloc.Snapshot.load(first), tracemalloc.Snapshot.load(second)
    stats = b.compare_to(a, key)
    total = sum(s.size_diff for s in stats)
    print(f"total traced growth {total / 2**20:+.1f} MB ({len(stats)} {key}s)")
    for stat in stats[:top]:
        print(f"\n{stat.size_diff / 2**20:+8.2f} MB  {stat.count_diff:+8d} blocks "
              f"(now {stat.size / 2**20:.1f} MB)")
        for line in stat.traceback.format(limit=12 if key == "traceback" else 1):
            print("   ", line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--every", type=float,
                        default=float(os.environ.get("MEMWATCH_EVERY_S", "60")))
    parser.add_argument("--frames", type=int, default=0, help="tracemalloc frames (0: off)")
    parser.add_argument("--compare", nargs=2, default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--key", default="traceback", choices=["traceback", "lineno", "filename"])
    args, rest = parser.parse_known_args(argv)
    if args.compare:
        compare(*args.compare, args.top, args.key)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.frames:
        _start_tracing(args.frames, out)
    threading.Thread(target=watch, args=(out, args.every, args.frames), daemon=True,
                     name="memwatch").start()
    rest = [a for a in rest if a != "--"]
    sys.argv = ["app.py", *rest]
    import app

    app.main(rest)


if __name__ == "__main__":
    main()
