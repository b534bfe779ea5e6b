"""txt2img from a hub id, through the fake hub (tests/fake_hub.py): the tab handler and the
/txt2img API load test/txt2img-shapes from a cold cache, record its commit sha and show the
download progress; a stopped hub is a clear message within 10 s and the app keeps serving."""

from __future__ import annotations

import time

import gradio as gr
import pytest
from PIL import Image

from playground.core import registry, repro
from playground.txt2img import FAMILY, SHIPPED, tab

pytest_plugins = ["tests.hub_fixtures"]  # the fake_hub and hub_cache fixtures

HUB_ID = "test/txt2img-shapes"
PROMPT = "a large red circle at the center on a black background"
# steps, guidance, scheduler, images, width, height, seed, randomize, previews, autoguidance,
# up to t: a hub id gets SD's defaults (512 px, 25 steps), so the test gives its own
SETTINGS = (2, 4.0, "DDIM", 1, 64, 64, 3, False, False, 0.0, 1000)


@pytest.fixture(autouse=True)
def _shipped_or_skip():
    if not (registry.WEIGHTS_DIR / SHIPPED / "model_index.json").exists():
        pytest.skip("weights/txt2img-shapes is not installed")


def forget_loaded(hub_id: str = HUB_ID) -> None:
    """Drop the app's loaded copy of ``hub_id`` (the next request goes to the hub again)."""
    with registry._LOCK:
        for key in [k for k in registry._CACHE.items if k[:2] == (FAMILY, hub_id)]:
            registry._CACHE.items.pop(key)


def pixels(path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_tab_handler_loads_a_hub_id_and_records_its_commit(fake_hub, hub_cache):
    forget_loaded()
    gallery, seed, _info, record, *_ = tab.run_generate(
        gr.Request(session_hash="hub-user"), HUB_ID, PROMPT, "", *SETTINGS)
    assert fake_hub.downloads() and fake_hub.bytes_served > 7_000_000  # a cold cache
    assert record["revision"] == fake_hub.repos[HUB_ID].sha
    assert record["model"] == HUB_ID and seed == 3
    assert repro.read_png_record(gallery[0])["revision"] == record["revision"]
    local = tab.run_generate(gr.Request(session_hash="hub-user"), SHIPPED, PROMPT, "",
                             *SETTINGS)
    assert "revision" not in local[3]  # a local folder has no commit
    assert pixels(gallery[0]) == pixels(local[0][0])  # the same weights, the same image


def test_the_loading_handlers_show_download_progress():
    """The handlers that load a model take gr.Progress(track_tqdm=True): huggingface_hub's
    download bars (and the step bar) reach the browser."""
    import inspect

    for handler in (tab.run_generate, tab.run_compare):
        default = inspect.signature(handler).parameters["progress"].default
        assert isinstance(default, gr.Progress) and default.track_tqdm


def test_api_loads_a_hub_id_with_progress_and_its_commit(fake_hub, hub_cache, client,
                                                         monkeypatch):
    from huggingface_hub import constants

    forget_loaded()
    # huggingface_hub reports a file's progress per DOWNLOAD_CHUNK_SIZE read (10 MiB: once for
    # each of our files); smaller chunks and a slow body make the bars move while we watch
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    fake_hub.delay_per_chunk = 0.01
    job = client.submit(HUB_ID, PROMPT, "", *SETTINGS, api_name="/txt2img")
    seen = set()
    while not job.done():
        for unit in job.status().progress_data or []:
            seen.add((unit.desc, unit.unit))
        time.sleep(0.05)
    gallery, _seed, _info, record, *_ = job.result()
    assert record["revision"] == fake_hub.repos[HUB_ID].sha and record["model"] == HUB_ID
    assert repro.read_png_record(gallery[0]["image"])["revision"] == record["revision"]
    assert fake_hub.downloads()
    assert any(unit in ("B", "b") or "Fetching" in str(desc) or "Download" in str(desc)
               for desc, unit in seen), seen


def test_a_stopped_hub_is_a_clear_message_within_10_s_and_the_app_keeps_serving(
        fake_hub, hub_cache, client, monkeypatch):
    from gradio_client.exceptions import AppError

    forget_loaded()
    fake_hub.stop()
    monkeypatch.setattr(registry, "_reach_cache", {})  # "reachable" is remembered otherwise
    start = time.monotonic()
    with pytest.raises(gr.Error, match="cannot reach the hub"):
        tab.run_generate(gr.Request(session_hash="hub-user"), HUB_ID, PROMPT, "", *SETTINGS)
    with pytest.raises(AppError, match="cannot reach the hub"):
        client.predict(HUB_ID, PROMPT, "", *SETTINGS, api_name="/txt2img")
    assert time.monotonic() - start < 10
    gallery, *_ = client.predict(SHIPPED, PROMPT, "", *SETTINGS, api_name="/txt2img")
    assert Image.open(gallery[0]["image"]).size == (64, 64)
