"""The GAN tab as a Space: ZeroGPU slots, start-up preload, a fair training queue."""

from __future__ import annotations

import threading

import pytest

from playground.core import live, registry, zerogpu
from playground.gan import FAMILY, SHIPPED, preload, register_models
from playground.gan import tab as gan_tab
from tests.conftest import write_tiny_faces

register_models()


@pytest.fixture
def tiny_faces(tmp_path, monkeypatch):
    """8 random 'faces' of 2 people in an image folder, used as the training data."""
    return write_tiny_faces(tmp_path, monkeypatch, people=2)


@pytest.mark.parametrize("handler", ["on_sample", "on_interpolate"])
def test_model_handlers_ask_for_a_zerogpu_slot(handler):
    assert f"playground.gan.tab.{handler}" in zerogpu.HANDLERS


def test_slots_are_sane_and_grow_with_the_work():
    sample = zerogpu.HANDLERS["playground.gan.tab.on_sample"].duration
    interpolate = zerogpu.HANDLERS["playground.gan.tab.on_interpolate"].duration
    one, many = sample(SHIPPED, 0, False, 1, 1.0, ""), sample(SHIPPED, 0, False, 64, 1.0, "")
    assert 5 <= one < many <= 120 and many >= 15
    assert sample(SHIPPED, 0, False, 1, 1.0, " ".join(map(str, range(40)))) > one  # a list
    assert sample(SHIPPED, 0, False, "lots", 1.0, "") == many  # unreadable: the largest
    assert sample("test/gan-olivetti", 0, False, 1, 1.0, "") > one  # a hub id is fetched
    two, all_frames = interpolate(SHIPPED, 0, 1, 2, "linear", 1.0), interpolate(SHIPPED, 0, 1,
                                                                              32, "linear", 1.0)
    assert 5 <= two < all_frames <= 120
    assert interpolate(SHIPPED, 0, 1, None, "linear", 1.0) == all_frames
    # spaces calls the slot function with the handler's arguments, gradio's Progress included
    progress = gan_tab.TRACK_TQDM
    assert sample(SHIPPED, 0, False, 1, 1.0, "", progress) == one
    assert interpolate(SHIPPED, 0, 1, 2, "linear", 1.0, progress) == two


def test_handlers_still_answer_off_zerogpu():
    faces, _, info, seeds, grid, seed_a = gan_tab.on_sample(SHIPPED, 4, False, 2, 1.0, "")
    assert seeds == [4, 5] and seed_a == 4 and len(faces) == 2 and grid.endswith(".png")


def test_preload_loads_the_shipped_generator_into_the_cache(monkeypatch):
    registry.clear_cache()
    loads = []
    original = registry._load_with_timeout
    monkeypatch.setattr(registry, "_load_with_timeout",
                        lambda entry, loader: loads.append(entry.name) or original(entry, loader))
    preload()
    assert loads == [SHIPPED]
    from playground.gan.inference import load_generator

    assert load_generator(SHIPPED) is load_generator(SHIPPED)  # cached: no second load
    assert loads == [SHIPPED] and registry.resolve(FAMILY, SHIPPED).is_local


def test_a_queued_run_says_what_it_waits_for(tiny_faces, monkeypatch):
    """While another run holds the only training slot, the status line is the run's
    waiting note; once the slot is free the same stream trains, and Stop still works."""
    slots = live._Slots(1)
    monkeypatch.setattr(live, "SLOTS", slots)
    assert slots.acquire("someone-else", threading.Event())  # the slot is busy
    stream = gan_tab.on_train("scratch", SHIPPED, 32, "cpu", 5000)
    run_id, *_, status, _ = next(stream)
    assert status.startswith("Queued: 1 training run(s) ahead of yours")
    assert "1 run(s) at a time" in status
    slots.release()
    for _, *_, status, _ in stream:
        if status.startswith("Training (scratch, 32 px, cpu): step"):
            break
    assert gan_tab.on_stop(run_id) == "Stopped: nothing was saved."
    *_, (last_id, _, _, _, status, _) = stream
    assert last_id is None and status == "Stopped: nothing was saved."


def _gan_tab_blocks():
    import gradio as gr

    with gr.Blocks() as demo:
        gan_tab.build_tab()
    return demo


def test_only_find_this_face_takes_an_image_and_the_tab_has_a_deep_link_button():
    """The one GAN event that reads a picture from the user is "find this face" (its upload
    goes through core.uploads); a DeepLinkButton shares the tab's settings and results."""
    import gradio as gr

    demo = _gan_tab_blocks()
    uploads = (gr.Image, gr.File, gr.ImageEditor, gr.Sketchpad, gr.UploadButton)
    reading = {fn.api_name for fn in demo.fns.values()
               if any(isinstance(c, uploads) and c.interactive is not False for c in fn.inputs)}
    assert reading == {"gan_find"}
    assert [b for b in demo.blocks.values() if isinstance(b, gr.DeepLinkButton)]


def test_browser_deep_link_reopens_the_faces(page, browser, app_url):
    """Generate, take the link the Share button copies, open it in another browser: the same
    settings and faces are there."""
    from tests.conftest import open_tab

    open_tab(page, "GAN faces")
    page.locator("#gan-n input").fill("3")
    page.locator("#gan-generate").click()
    page.wait_for_function("document.querySelectorAll('#gan-samples img').length == 3")
    assert page.locator("#gan-share button").is_visible()
    key = page.evaluate("() => fetch(`gradio_api/deep_link?session_hash="
                        "${window.__gradio_session_hash__}`).then(r => r.text())").strip('"')
    assert key
    other = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    try:
        other.goto(f"{app_url}/?deep_link={key}")
        other.wait_for_selector("button[role='tab']")
        open_tab(other, "GAN faces")
        other.wait_for_function("document.querySelectorAll('#gan-samples img').length == 3")
        assert other.locator("#gan-n input").input_value() == "3"
        assert "Seeds used: 0, 1, 2" in other.inner_text("#gan-info")
    finally:
        other.context.close()
