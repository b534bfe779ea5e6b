"""txt2img in a class: per-session output files, ZeroGPU wrappers, Stop, checked uploads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from playground.core import registry, sessions
from playground.txt2img import inference as inf
from playground.txt2img import stopping
from tests.conftest import register_tiny_txt2img

PROMPT = "a small red star at the top left on a blue background"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny pipeline registered as 'tiny-class' (everyone's model)."""
    return register_tiny_txt2img(tmp_path_factory, "tiny-class")


# ---- output files ------------------------------------------------------------------------

def test_outputs_are_unique_per_request_and_live_in_the_session_folder(tiny):
    """Two users on the same seed get the same pixels in different files, each in their own
    session's folder; the step frames too."""
    results = {}
    for user in ("alice", "bob", "bob"):
        with sessions.use_session(user):
            result = inf.generate(tiny, PROMPT, steps=2, seed=3, n_images=2)
            frames = inf.save_frames(result.trajectory)
        results.setdefault(user, []).append((result, frames))
    paths = [p for runs in results.values() for r, f in runs for p in [*r.paths, *f]]
    assert len(set(paths)) == len(paths) == 3 * (2 + 2)
    for user, runs in results.items():
        folder = sessions.output_dir(inf.FAMILY, user)
        for result, frames in runs:
            assert all(p.parent == folder for p in result.paths)
            assert all(str(p).startswith(str(folder)) for p in frames)
    a, b = results["alice"][0][0], results["bob"][0][0]
    assert a.paths[0].read_bytes() == b.paths[0].read_bytes()  # same seed, same PNG bytes
    sessions.end_session("alice")
    assert not any(p.exists() for p in a.paths)
    assert all(p.exists() for p in b.paths)  # bob's stay


def test_no_global_output_folder_is_left():
    assert not hasattr(inf, "OUT_DIR")


# ---- ZeroGPU -------------------------------------------------------------------------------

def test_model_handlers_ask_zerogpu_for_a_slot_that_grows_with_the_work():
    from playground.core import zerogpu
    from playground.txt2img import tab

    generate = zerogpu.HANDLERS["playground.txt2img.tab.generate_on_device"].duration
    compare = zerogpu.HANDLERS["playground.txt2img.tab.compare_on_device"].duration

    def gen(steps, n, size, show=True, auto=0.0):
        return generate("m", "p", "", steps, 4.0, "DDIM", n, size, size, 0, show, auto, 600)

    def cmp(steps, size):
        return compare("m", "p", "", steps, 1.0, 7.5, "DDIM", size, size, 0, 0.0, 600)

    small, shipped = gen(2, 1, 64, show=False), gen(20, 1, 64, auto=2.0)
    sd, big = gen(25, 4, 512), gen(100, 4, 1024)
    assert 5 <= small <= shipped <= 15  # our 64 px model: the fixed part
    assert shipped < sd < big and 20 <= sd <= 40 and big == zerogpu.MAX_DURATION_S
    assert gen(25, 1, 512, show=False) < gen(25, 2, 512, show=False) < gen(50, 2, 512, show=False)
    assert cmp(25, 512) > gen(25, 1, 512, show=False)  # two runs
    assert 5 <= cmp(4, 64) <= 15 and cmp(25, 512) < cmp(100, 1024) <= zerogpu.MAX_DURATION_S
    # unreadable numbers: SD's defaults (25 steps, 1 image, 512 px), not an error
    assert gen("bad", None, None) == gen(25, 1, 512)
    # the gradio handlers run the device parts (a test of the wiring, not of the names)
    assert "generate_on_device" in tab.run_generate.__wrapped__.__code__.co_names
    assert "compare_on_device" in tab.run_compare.__wrapped__.__code__.co_names


def test_handler_errors_reach_the_user_as_gr_error(tiny):
    """The device parts raise our own errors; the tab handlers show them as gr.Error (on
    ZeroGPU, core.zerogpu converts them inside the worker: tests/test_classroom.py)."""
    import gradio as gr

    from playground.txt2img import tab

    with pytest.raises(gr.Error, match="Prompt is empty"):
        tab.run_generate(tiny, "", "", 2, 4.0, "DDIM", 1, 16, 16, 0, False, False)
    with pytest.raises(gr.Error, match="Unknown model"):
        tab.run_compare("no-such-model", PROMPT, "", 2, 1.0, 7.5, "DDIM", 16, 16, 0, False)


def test_device_part_writes_into_the_current_session(tiny):
    from playground.txt2img import tab

    with sessions.use_session("carol"):
        out = tab.generate_on_device(tiny, PROMPT, "", 2, 4.0, "DDIM", 1, 16, 16, 0)
    folder = sessions.output_dir(inf.FAMILY, "carol")
    assert [p.startswith(str(folder)) for p in [*out.paths, *out.frames]] == [True] * 3


def test_preload_loads_the_shipped_pipeline_through_the_cache(monkeypatch):
    from playground import txt2img

    seen = []
    monkeypatch.setattr(inf, "load_pipeline", seen.append)
    txt2img.preload()
    assert seen == [txt2img.SHIPPED]


# ---- Stop ----------------------------------------------------------------------------------

@pytest.fixture
def slow_unet(tiny):
    """Every UNet call of the tiny model (each pipeline copy) takes 50 ms more and is logged as
    (thread, end time), so a run of many steps lasts long enough to be stopped in the middle."""
    calls: list[tuple[str, float]] = []

    def hook(module, args, output):
        time.sleep(0.05)
        calls.append((threading.current_thread().name, time.monotonic()))
    handles = [inf.load_pipeline(tiny, copy=k).pipe.unet.register_forward_hook(hook)
               for k in range(inf.COPIES)]
    yield calls
    for handle in handles:
        handle.remove()


def _wait_for(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_generate_stops_where_asked_and_returns_the_prediction_at_that_step(tiny, tmp_path):
    asked = []

    def stop():
        asked.append(1)
        return len(asked) >= 3

    result = inf.generate(tiny, PROMPT, steps=10, guidance=4.0, seed=1, n_images=2, stop=stop,
                          out_dir=tmp_path)
    assert (result.stopped_at, result.total_steps, len(asked)) == (3, 10, 3)
    assert len(result.trajectory) == 3 and len(result.images) == 2
    assert result.record["params"]["stopped_at_step"] == 3
    assert result.notes[0].startswith("Stopped at step 3/10")
    # the first image is the model's x0 prediction at step 3: the last step preview's pixels
    shown = np.asarray(result.trajectory[-1], dtype=int)
    assert np.abs(np.asarray(result.images[0], dtype=int) - shown).max() <= 2
    full = inf.generate(tiny, PROMPT, steps=10, guidance=4.0, seed=1, n_images=2,
                        stop=lambda: False, out_dir=tmp_path)
    assert full.stopped_at is None and "stopped_at_step" not in full.record["params"]
    assert full.images[0].tobytes() != result.images[0].tobytes()


def test_stop_ends_that_sessions_run_within_one_step_and_no_one_elses(tiny, slow_unet):
    """Alice's Stop ends her run after the step in flight; Bob's registered request (the app
    runs one generation at a time, so his would wait for the model slot) keeps its flag clear,
    and Carol's Stop, with nothing running, stops nothing."""
    import gradio as gr

    from playground.txt2img import tab

    results = {}

    def run(user):
        results[user] = tab.run_generate(gr.Request(session_hash=user), tiny, PROMPT, "", 40,
                                         4.0, "DDIM", 2, 16, 16, 0, False, True, 0.0, 1000)
    alice = threading.Thread(target=run, args=("alice",), name="alice")
    with stopping.running("bob") as bob_flag:
        alice.start()
        _wait_for(lambda: len(slow_unet) >= 5)
        assert tab.stop_generation(gr.Request(session_hash="carol")) == (
            "Nothing is running to stop.")
        clicked = time.monotonic()
        assert tab.stop_generation(gr.Request(session_hash="alice")).startswith("Stopping")
        alice.join(10)
        assert not alice.is_alive() and not stopping.is_stop_requested(bob_flag)
    assert sum(t > clicked for _, t in slow_unet) <= 1  # the step in flight, no more
    gallery, _seed, info, record, strip, *_ = results["alice"]
    k = record["params"]["stopped_at_step"]
    assert 5 <= k < 40 and f"Stopped at step {k}/40" in info
    assert len(gallery) == 2 and all(Path(p).exists() for p in gallery) and len(strip) == k
    assert stopping.running_count("alice") == stopping.running_count("bob") == 0
    assert tab.stop_generation(gr.Request(session_hash="alice")) == "Nothing is running to stop."
    run("bob")  # a later run of a session that stopped before is not stopped
    run("alice")
    for user in ("alice", "bob"):
        _gallery, _seed, info, record, strip, *_ = results[user]
        assert "stopped_at_step" not in record["params"] and "Stopped" not in info
        assert len(strip) == 40


def test_stop_during_compare_skips_the_second_run(tiny, slow_unet):
    import gradio as gr

    from playground.txt2img import tab

    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", tab.run_compare(
        gr.Request(session_hash="dave"), tiny, PROMPT, "", 30, 1.0, 7.5, "DDIM", 16, 16, 0,
        False, 0.0, 1000)))
    worker.start()
    _wait_for(lambda: len(slow_unet) >= 3)
    tab.stop_generation(gr.Request(session_hash="dave"))
    worker.join(10)
    a, b, info = out["r"]
    assert Path(a).exists() and b is None
    assert "Stopped guidance A at step" in info and "guidance B was not run" in info


def test_stop_over_the_api_stops_that_clients_run_only(tiny, slow_unet, app_url, client):
    """Client A stops its run; client B's request, queued behind it for the model slot, then
    runs to the end; a third client's Stop stops nothing."""
    from gradio_client import Client

    args = (tiny, PROMPT, "", 40, 4.0, "DDIM", 1, 16, 16, 0, False, True, 0.0, 1000)
    job = client.submit(*args, api_name="/txt2img")
    _wait_for(lambda: len(slow_unet) >= 5, timeout=60)
    bob, carol = Client(app_url, verbose=False), Client(app_url, verbose=False)
    bob_job = bob.submit(*args, api_name="/txt2img")
    assert carol.predict(api_name="/txt2img_stop") == "Nothing is running to stop."
    clicked = time.monotonic()
    assert client.predict(api_name="/txt2img_stop").startswith("Stopping")
    before = sum(t <= clicked for _, t in slow_unet)  # one UNet call per step (batched CFG)
    gallery, _seed, info, record, strip, *_ = job.result(timeout=30)
    stopped_at = record["params"]["stopped_at_step"]
    assert "Stopped at step" in info and 5 <= stopped_at < 40 and len(strip) == stopped_at
    assert len(gallery) == 1
    _gallery, _seed, info, record, strip, *_ = bob_job.result(timeout=60)
    assert "stopped_at_step" not in record["params"] and len(strip) == 40
    # A ran the steps in flight while the Stop request travelled (one 50 ms step on a quiet
    # machine; a few under load: the one-step bound is tested on the handler), B all 40
    assert stopped_at <= before + 8 and len(slow_unet) == stopped_at + 40


# ---- uploads (PNG info) --------------------------------------------------------------------

def _bomb(folder: Path) -> Path:
    from PIL import Image

    path = folder / "bomb.png"
    Image.new("L", (13000, 13000), 0).save(path)  # ~170 kB on disk, 169 megapixels
    return path


def test_png_info_refuses_a_pixel_bomb_fast_and_names_the_limit(tmp_path):
    from playground.core.errors import UserInputError

    bomb = _bomb(tmp_path)
    start = time.perf_counter()
    with pytest.raises(UserInputError, match=r"13000×13000 = 169\.0 megapixels; the limit is 16"):
        inf.read_parameters(bomb)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("content, message", [
    (b"hello, these are notes, not an image", "is not an image this app can read"),
    (b"", "is empty"),
])
def test_png_info_says_what_is_wrong_with_the_file(tmp_path, content, message):
    import gradio as gr

    from playground.txt2img import tab

    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        tab.restore_from_png(str(path))


def test_png_info_over_the_api_refuses_a_bomb_and_a_text_file(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    start = time.perf_counter()
    with pytest.raises(AppError, match=r"169\.0 megapixels; the limit is 16 megapixels"):
        client.predict(handle_file(str(_bomb(tmp_path))), api_name="/txt2img_png_info")
    assert time.perf_counter() - start < 5
    text = tmp_path / "notes.png"
    text.write_text("hello, these are notes, not an image")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(text)), api_name="/txt2img_png_info")


def test_requests_at_once_sample_on_their_own_pipeline_copies(tiny):
    """Two requests at the same time never share a UNet (its hooks are per request); a hub
    model keeps a single copy and its requests take turns."""
    entry = registry.resolve(inf.FAMILY, tiny)
    with inf.pipeline_copy(entry) as first, inf.pipeline_copy(entry) as second:
        assert inf.COPIES >= 2 and first.pipe.unet is not second.pipe.unet
    with inf.pipeline_copy(entry) as again:
        assert again.pipe.unet in (first.pipe.unet, second.pipe.unet)  # copies are reused
    hub = registry.ModelEntry("owner/some-sd", inf.FAMILY, hub_id="owner/some-sd")
    assert inf.copy_pool(hub).qsize() == 1 and inf.copy_pool(entry).qsize() == inf.COPIES
