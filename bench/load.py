"""A class on one link: N simulated users for T seconds against a launched app.

    python -m bench.load [--users 20] [--seconds 90] [--warmup S] [--train] [--abandon]
                         [--json FILE] [--memwatch DIR [--tracemalloc-frames N]]

Launches ``app.py`` in its own process (so its memory and CPU are measured alone), warms every
route once, then runs ``--users`` gradio_client users, each its own session, drawing requests
from a mix of every tab's generation routes for ``--seconds``. ``--train`` adds one more user
who trains all the time (``/gpt_train``, 300 steps, again and again). ``--abandon`` ends with a
user who starts a long run and drops the connection, and measures the server's CPU after it.

Prints per-route p50/p95, failures, results per minute (two ways: the requests started in the
window over the time until the last ends, and the steady state: the results that finished
inside the window, per minute of it), the server's RSS under load (the last
30 s of the warm-up, then each minute's median and max), and the growth of its output and cache
folders. ``--memwatch DIR`` runs the server under ``research.memwatch`` (what grows, each minute).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "playground" / "gpt" / "tiny_text.txt"

# (route, weight, kwargs, the input that takes a random seed): a class clicking through the
# tabs at their default settings
MIX = [
    ("/txt2img", 3, {"prompt": "a small blue star at the top left on a white background",
                     "negative": "", "show_steps": False}, "seed"),
    ("/gan_sample", 3, {"n": 8, "seed_list": ""}, "seed"),
    ("/gan_interpolate", 1, {"frames": 8}, "seed_a"),
    ("/vae_sample", 2, {"n": 8}, "seed"),
    ("/vae_interpolate", 1, {"face_a": "person 10 · photo 0", "face_b": "person 10 · photo 5",
                             "upload_a": None, "upload_b": None, "frames": 10}, None),
    ("/gpt_generate", 3, {"max_new_tokens": 60}, "seed"),
    ("/flow_density", 2, {"n_samples": 1000}, "seed"),
    ("/flow_layers", 1, {}, "seed"),
]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    ends: list[tuple[str, float]] = field(default_factory=list)  # (route, monotonic end)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.latencies.setdefault(route, []).append(seconds)
                self.ends.append((route, time.monotonic()))
            else:
                self.failures.setdefault(route, []).append(error[:200])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (training workers included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def folder_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def launch(port: int, workdir: Path, memwatch: str | None = None,
           frames: int = 0) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(workdir / "gr"),
               PLAYGROUND_OUTPUT_DIR=str(workdir / "out"),
               PLAYGROUND_RUNS_DIR=str(workdir / "runs"))
    # --memwatch: the same app under research.memwatch (RSS, object counts, Gradio's records
    # and optional tracemalloc snapshots each minute, into that folder)
    server = (["-m", "research.memwatch", "--out", str(Path(memwatch).resolve()), "--frames",
               str(frames), "--"] if memwatch else ["app.py"])
    proc = subprocess.Popen([sys.executable, *server, "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "w"))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start within 180 s")


def client(url: str, tries: int = 5):
    """A gradio_client session; connecting is retried (its 5 s info request can time out on a
    saturated server, or one slowed by ``--memwatch``'s tracing)."""
    import httpx
    from gradio_client import Client

    for attempt in range(tries):
        try:
            return Client(url, verbose=False)
        except httpx.TimeoutException:
            if attempt == tries - 1:
                raise
            time.sleep(2)


def user_loop(url: str, stop_at: float, stats: Stats, seed: int, clock_from: float = 0.0,
              warm: Stats | None = None) -> None:
    """One user (one session) clicking through ``MIX`` until ``stop_at``; requests started
    before ``clock_from`` (the warm-up) are counted in ``warm`` instead."""
    rng = random.Random(seed)
    c = client(url)
    routes = [r for r, w, _, _ in MIX for _ in range(w)]
    settings = {r: (k, seed_key) for r, _, k, seed_key in MIX}
    while time.monotonic() < stop_at:
        route = rng.choice(routes)
        kwargs, seed_key = settings[route]
        if seed_key:
            kwargs = {**kwargs, seed_key: rng.randrange(1000)}
        timed(route, partial(c.predict, **kwargs, api_name=route), stats, clock_from, warm)


def timed(route: str, call, stats: Stats, clock_from: float = 0.0,
          warm: Stats | None = None) -> None:
    """Run one request and record its latency or its failure (never fatal), into ``warm`` if
    it started before ``clock_from`` (the warm-up)."""
    t0 = time.monotonic()
    into = stats if t0 >= clock_from or warm is None else warm
    try:
        call()
        into.add(route, time.monotonic() - t0)
    except Exception as exc:
        into.add(route, None, f"{type(exc).__name__}: {exc}")


def trainer_loop(url: str, stop_at: float, stats: Stats, clock_from: float = 0.0,
                 warm: Stats | None = None) -> None:
    from gradio_client import handle_file

    c = client(url)
    route = "/gpt_train (training user)"
    while time.monotonic() < stop_at:
        timed(route, partial(c.predict, handle_file(str(TEXT)), "new", 300, 0, False,
                             api_name="/gpt_train"), stats, clock_from, warm)


def abandon_check(url: str, server_pid: int) -> dict:
    """Start a long run, drop the client, and measure the server's CPU over the next 10 s."""
    c = client(url)
    job = c.submit("built-in target", "rings", None, None, "nsf", 6, 96, 0.005, 20000, 512, 0,
                   False, api_name="/flow_train")
    time.sleep(8)  # the worker starts and trains
    busy_before = cpu_seconds(server_pid)
    time.sleep(2)
    busy_rate = (cpu_seconds(server_pid) - busy_before) / 2
    job.cancel()
    c.close() if hasattr(c, "close") else None
    t_drop = time.monotonic()
    time.sleep(10)
    c0 = cpu_seconds(server_pid)
    time.sleep(3)
    after = (cpu_seconds(server_pid) - c0) / 3
    return {"cores_while_training": round(busy_rate, 2), "cores_10s_after_drop": round(after, 2),
            "workers_left": len(training_workers(server_pid)), "waited_s": round(
                time.monotonic() - t_drop, 1)}


def training_workers(server_pid: int) -> list[int]:
    """The server's multiprocessing workers (not its idle ``resource_tracker`` helper)."""
    out = []
    for pid in tree_pids(server_pid)[1:]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(pid)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(users: int, seconds: float, train: bool, abandon: bool, warmup: float = 0.0,
        memwatch: str | None = None, frames: int = 0) -> dict:
    """The warm-up is the same users (the same sessions) on the same load, untimed: a class
    that has been working for ``warmup`` seconds. The clock starts without a pause, so the
    RSS baseline is taken under load, as every later sample is."""
    workdir = Path(tempfile.mkdtemp(prefix="playground-load-"))
    port = free_port()
    proc = launch(port, workdir, memwatch, frames)
    url = f"http://127.0.0.1:{port}"
    try:
        warm, stats = Stats(), Stats()
        first = user_loop_once(url, warm)  # held to the end: its session must not end early
        rss_idle_start = rss_mb(proc.pid)
        clock_from = time.monotonic() + warmup
        stop_at = clock_from + seconds
        window = (time.time(), time.time() + warmup + seconds)  # wall clock, warm-up included
        threads = [threading.Thread(target=user_loop,
                                    args=(url, stop_at, stats, i, clock_from, warm))
                   for i in range(users)]
        if train:
            threads.append(threading.Thread(target=trainer_loop,
                                            args=(url, stop_at, stats, clock_from, warm)))
        rss: dict = {"idle_start": rss_idle_start}
        sampler = threading.Thread(target=sample_rss,
                                   args=(proc.pid, workdir, clock_from, stop_at, rss),
                                   daemon=True)
        cores: dict[str, float] = {}
        for key, at in (("start", clock_from), ("end", stop_at)):
            threading.Timer(max(0.0, at - time.monotonic()), cpu_mark,
                            (proc.pid, cores, key)).start()
        for t in [*threads, sampler]:
            t.start()
        if memwatch and frames:  # research.memwatch: trace from a minute into the clock
            threading.Timer(max(0.0, clock_from - time.monotonic()) + 60, proc.send_signal,
                            (signal.SIGUSR1,)).start()
        for t in threads[:users]:  # the users' window: results/min counts their results
            t.join()
        elapsed = time.monotonic() - clock_from
        for t in threads[users:]:  # the training user's last run may end later
            t.join()
        sampler.join()
        report = summarize(stats, elapsed, users, train)
        report["completed_per_min"] = completed_per_min(stats, warm, clock_from, stop_at)
        if len(cores) == 4:  # CPU cores used in the window: the server tree, this load client
            report["cores"] = {k: round((cores[f"end_{k}"] - cores[f"start_{k}"]) / seconds, 2)
                               for k in ("server", "client")}
        report.update(rss_report(rss, rss_mb(proc.pid)))
        report["disk_growth_mb"] = round(folder_mb(workdir) - rss.get("disk_at_clock", 0.0), 1)
        if abandon:
            report["abandon"] = abandon_check(url, proc.pid)
        log = (workdir / "server.log").read_text(errors="replace").splitlines()
        report["sessions_ended"] = sessions_ended(log, *window)
        del first
        if report["failed"]:  # the server's side of a failure (its log goes with workdir)
            report["server_log_tail"] = [line for line in log if "Warning" not in line][-40:]
        return report
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)


def sample_rss(pid: int, workdir: Path, clock_from: float, stop_at: float, out: dict,
               every_s: float = 10.0, baseline_s: float = 30.0) -> None:
    """The server's RSS (MB) every ``every_s`` seconds under load, from ``baseline_s`` before
    the clock starts (the baseline's window) until it stops. Single samples swing by ±3 %
    with the requests in flight (txt2img's activations), so minutes are summarised by their
    median (growth) and max (peak)."""
    samples: list[tuple[float, float]] = []  # (seconds from clock start, MB)
    time.sleep(max(0.0, clock_from - baseline_s - time.monotonic()))
    while time.monotonic() < stop_at:
        samples.append((time.monotonic() - clock_from, rss_mb(pid)))
        if "disk_at_clock" not in out and samples[-1][0] >= 0:
            out["disk_at_clock"] = folder_mb(workdir)
        time.sleep(min(every_s, max(0.0, stop_at - time.monotonic())))
    out["samples"] = samples


def rss_report(rss: dict, idle_end: float) -> dict:
    samples = rss.get("samples", [])
    before = [mb for t, mb in samples if t < 0]
    minutes: dict[int, list[float]] = {}
    for t, mb in samples:
        if t >= 0:
            minutes.setdefault(int(t // 60), []).append(mb)
    medians = [round(statistics.median(v)) for _, v in sorted(minutes.items())]
    baseline = statistics.median(before) if before else rss["idle_start"]
    return {"rss_after_warmup_mb": round(baseline), "rss_end_mb": medians[-1] if medians else None,
            "rss_trace_mb": medians,
            "rss_trace_max_mb": [round(max(v)) for _, v in sorted(minutes.items())],
            "rss_idle_start_mb": round(rss["idle_start"]), "rss_idle_end_mb": round(idle_end)}


def sessions_ended(log: list[str], start: float, end: float) -> int:
    """Sessions the server ended between ``start`` and ``end`` (wall clock): simulated users
    never leave, so such a session lost its heartbeat (Gradio's unload fired)."""
    import datetime

    count = 0
    for line in log:
        if " ended: runs cancelled" in line:
            try:  # app.py's log format starts with the local time
                stamp = datetime.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()
            except ValueError:
                continue
            count += start <= stamp <= end
    return count


def user_loop_once(url: str, stats: Stats):
    """Every route once (loads every model) before the clock starts; returns the client."""
    c = client(url)
    for route, _, kwargs, _ in MIX:
        timed(route, partial(c.predict, **kwargs, api_name=route), stats)
    return c


def cpu_mark(pid: int, out: dict, key: str) -> None:
    """CPU seconds so far of the server's process tree and of this (the load client) process."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    out[f"{key}_server"] = cpu_seconds(pid)
    out[f"{key}_client"] = usage.ru_utime + usage.ru_stime


def completed_per_min(stats: Stats, warm: Stats, clock_from: float, stop_at: float) -> float:
    """Steady-state throughput: generation results that *finished* inside the window, whenever
    they started (a request begun in the warm-up counts if it ends in the window), per minute
    of the window. ``results_per_min`` instead counts the requests *started* in the window and
    divides by the time until the last of them ends, so a slow route's drain after the window
    (txt2img's ~50 s queue) lowers it."""
    ends = [t for s in (stats, warm) for route, t in s.ends if "training" not in route]
    return round(sum(clock_from <= t <= stop_at for t in ends) / (stop_at - clock_from) * 60, 1)


def summarize(stats: Stats, elapsed: float, users: int, train: bool) -> dict:
    routes = sorted(set(stats.latencies) | set(stats.failures))
    rows = {}
    for route in routes:
        lat = stats.latencies.get(route, [])
        rows[route] = {"n": len(lat), "failed": len(stats.failures.get(route, [])),
                       "p50_s": round(statistics.median(lat), 2) if lat else None,
                       "p95_s": round(percentile(lat, 0.95), 2) if lat else None}
    gen = [v for r, vals in stats.latencies.items() if "training" not in r for v in vals]
    return {"users": users, "training_user": train, "seconds": round(elapsed),
            "results_per_min": round(len(gen) / elapsed * 60, 1),
            "p50_s": round(statistics.median(gen), 2) if gen else None,
            "p95_s": round(percentile(gen, 0.95), 2) if gen else None,
            "failed": sum(len(v) for v in stats.failures.values()),
            "failures": {r: v[:3] for r, v in stats.failures.items()}, "routes": rows}


def print_report(report: dict) -> None:
    print(f"\n{report['users']} users for {report['seconds']} s"
          f"{' + one training user' if report['training_user'] else ''}: "
          f"{report['results_per_min']} results/min (started in the window, drain included; "
          f"{report.get('completed_per_min')} finished in the window), p50 {report['p50_s']} s, "
          f"p95 {report['p95_s']} s, {report['failed']} failed; RSS under load "
          f"{report['rss_after_warmup_mb']} -> {report['rss_end_mb']} MB; disk +"
          f"{report['disk_growth_mb']} MB")
    if report.get("cores"):
        print(f"CPU cores used in the window: server {report['cores']['server']}, "
              f"load client {report['cores']['client']}")
    if report.get("rss_trace_mb"):
        print(f"RSS each minute under load (MB), median: {report['rss_trace_mb']}, "
              f"max: {report['rss_trace_max_mb']}; idle before the users "
              f"{report['rss_idle_start_mb']}, after {report['rss_idle_end_mb']}")
    print(f"{'route':32} {'n':>5} {'failed':>6} {'p50 s':>7} {'p95 s':>7}")
    for route, row in report["routes"].items():
        print(f"{route:32} {row['n']:>5} {row['failed']:>6} {row['p50_s']!s:>7} "
              f"{row['p95_s']!s:>7}")
    if report.get("abandon"):
        print("abandoned training run:", report["abandon"])
    for route, errors in report["failures"].items():
        print("FAILED", route, errors)
    if report.get("sessions_ended"):
        print(f"sessions ended while the users ran (a heartbeat dropped): "
              f"{report['sessions_ended']}")
    if report.get("server_log_tail"):
        print("server log, last lines:", *report["server_log_tail"], sep="\n  ")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--train", action="store_true", help="add one user training all along")
    parser.add_argument("--abandon", action="store_true",
                        help="end with an abandoned training run and measure the CPU after")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds of the same users' load before the clock; the RSS "
                             "baseline is the median of its last 30 s")
    parser.add_argument("--json", default=None)
    parser.add_argument("--memwatch", default=None, metavar="DIR",
                        help="run the server under research.memwatch, writing to DIR")
    parser.add_argument("--tracemalloc-frames", type=int, default=0,
                        help="with --memwatch: tracemalloc snapshots with this many frames")
    args = parser.parse_args(argv)
    report = run(args.users, args.seconds, args.train, args.abandon, args.warmup,
                 args.memwatch, args.tracemalloc_frames)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
