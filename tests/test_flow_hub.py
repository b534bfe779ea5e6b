"""A flow from a hub id (the fake hub of tests/fake_hub.py): through the tab handlers and over
the API, its records carry the commit sha, downloads report progress, a stopped hub is a clear
message within 10 s and the app keeps serving."""

from __future__ import annotations

import time

import pytest

from playground.core import registry
from playground.core.repro import read_png_record
from playground.flow import register_models

pytest_plugins = ["tests.hub_fixtures"]
HUB_ID = "test/flow-8gaussians"

register_models()


@pytest.fixture
def cold_models():
    """No flow loaded yet: the next hub load downloads (with ``hub_cache``) and records its sha."""
    registry.clear_cache()
    yield
    registry.clear_cache()


def test_tab_handlers_load_a_hub_flow_and_record_its_commit(fake_hub, hub_cache, cold_models):
    from playground.flow.tab import show_density, show_layers

    sha = fake_hub.repos[HUB_ID].sha
    heat, samples, metrics, seed = show_density("8gaussians", HUB_ID, 300, 5, False)
    assert {p.rsplit("/", 1)[-1] for p in fake_hub.downloads()} >= {"model.safetensors",
                                                                    "config.json"}
    assert metrics["flow"] == HUB_ID and metrics["kl"] < 0.05  # the shipped weights
    assert metrics["record"]["revision"] == sha
    assert metrics["record"]["model_hash"] == f"hub:{HUB_ID}"
    assert read_png_record(heat)["revision"] == sha == read_png_record(samples)["revision"]
    image, table, _ = show_layers(HUB_ID, 0, False)
    assert read_png_record(image)["revision"] == sha and len(table) == 6
    local = show_density("8gaussians", "flow-8gaussians", 300, 5, False)[2]
    assert "revision" not in local["record"]  # a local folder has its content hash instead
    assert local["test_nll"] == metrics["test_nll"]


def test_api_loads_a_hub_flow_with_download_progress(client, fake_hub, hub_cache, cold_models,
                                                     monkeypatch):
    """Over the API by name; huggingface_hub's tqdm bar reaches the client as progress (the
    download is slowed and read in 64 KiB pieces so there is something to see)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    fake_hub.delay_per_chunk = 0.15  # model.safetensors: 417 kB, 7 chunks, about a second
    job = client.submit("8gaussians", HUB_ID, 300, 5, False, api_name="/flow_density")
    seen = []
    while not job.done():
        progress = job.status().progress_data
        if progress:
            seen.extend(p.unit for p in progress)
        time.sleep(0.02)
    heat, _, metrics, _ = job.result()
    assert metrics["flow"] == HUB_ID
    assert metrics["record"]["revision"] == fake_hub.repos[HUB_ID].sha
    assert read_png_record(heat)["revision"] == fake_hub.repos[HUB_ID].sha
    assert seen, "no download progress reached the client"


def test_stopped_hub_is_a_clear_message_within_10_s_and_the_app_keeps_serving(
        client, fake_hub, hub_cache, cold_models):
    fake_hub.stop()
    registry._reach_cache.clear()  # "reachable" is remembered for a few seconds
    t0 = time.monotonic()
    with pytest.raises(Exception, match="cannot reach the hub") as info:
        client.predict("8gaussians", HUB_ID, 300, 5, False, api_name="/flow_density")
    assert time.monotonic() - t0 < 10
    assert HUB_ID in str(info.value)
    _, _, metrics, _ = client.predict("8gaussians", "flow-8gaussians", 300, 5, False,
                                      api_name="/flow_density")
    assert metrics["flow"] == "flow-8gaussians"
