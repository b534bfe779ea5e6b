"""App start-up: time until the page answers HTTP 200, vs `python -c "import gradio, torch"`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.registry import benchmark

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_import() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio, torch"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def time_app_ready(timeout: float = 120.0) -> float:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("app did not answer within the timeout")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@benchmark("startup: app ready (HTTP 200) / import gradio+torch")
def startup() -> dict:
    time_import()  # warm the file cache for both
    reference = min(time_import() for _ in range(3))
    ours = min(time_app_ready() for _ in range(3))
    return {"ours": ours, "reference": reference, "unit": "s", "note": "goal <= 1.5"}
