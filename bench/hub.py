"""Hub row: loading a model by hub id (the fake hub of tests/, cold cache) against loading the
same weights from their local folder, both through the app's own loader."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.registry import benchmark

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@benchmark("hub: gpt-austen by hub id (fake hub, cold cache) / local folder")
def hub_vs_local() -> dict:
    from playground import gpt
    from playground.core import registry
    from playground.gpt.inference import load_language_model
    from tests.fake_hub import FakeHub
    from tests.hub_fixtures import hub_environment

    gpt.register_models()
    hub_times, local_times = [], []
    with FakeHub({"test/gpt-austen": ROOT / "weights" / "gpt-austen"}) as hub:
        for _ in range(3):
            cache = Path(tempfile.mkdtemp(prefix="bench-hub-"))
            try:
                with hub_environment(hub.endpoint, cache):
                    registry.clear_cache()
                    hub_times.append(_timed(lambda: load_language_model("test/gpt-austen")))
                registry.clear_cache()
                local_times.append(_timed(lambda: load_language_model(gpt.SHIPPED)))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    registry.clear_cache()
    return {"ours": min(hub_times), "reference": min(local_times), "unit": "s",
            "note": "app loader both sides; the hub side adds the reachability probe, "
                    "model_info (commit sha, size guard) and downloading 28 MB over HTTP"}
