"""The Flows tab end to end: the API by name (gradio_client) and a drawing trained in Chromium."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.core.repro import read_png_record
from tests.conftest import open_tab


def test_api_density_and_metrics(client):
    heat, samples, metrics, seed = client.predict(
        "8gaussians", "flow-8gaussians", 500, 3, False, api_name="/flow_density")
    assert seed == 3 and metrics["seed"] == 3
    assert metrics["kl"] < 0.05 and metrics["kl_se"] > 0
    assert metrics["test_nll"] == pytest.approx(metrics["target_entropy"] + metrics["kl"],
                                                abs=0.05)
    image = Image.open(heat)
    assert image.size == (400, 400)
    assert read_png_record(heat)["params"]["target"] == "8gaussians"
    again = client.predict("8gaussians", "flow-8gaussians", 500, 3, False,
                           api_name="/flow_density")
    assert np.array_equal(np.asarray(Image.open(samples)), np.asarray(Image.open(again[1])))


def test_api_train_and_bad_input(client):
    out = client.predict("built-in target", "moons", None, None, "realnvp", 2, 16, 5e-3, 30, 64,
                         0, False, api_name="/flow_train")
    status = out[3]
    assert status.startswith("Done: step 30/30") and "seed 0" in status
    with pytest.raises(Exception, match="Learning rate"):
        client.predict("built-in target", "moons", None, None, "nsf", 2, 16, 0, 30, 64, 0,
                       False, api_name="/flow_train")
    with pytest.raises(Exception, match="Draw something|empty"):
        client.predict("my drawing", "moons", None, None, "nsf", 2, 16, 1e-3, 30, 64, 0, False,
                       api_name="/flow_train")


def _image_bytes(page, selector: str) -> bytes | None:
    img = page.locator(f"{selector} img")
    if img.count() == 0:
        return None
    src = img.first.get_attribute("src")
    if not src:
        return None
    return page.request.get(src).body()


def _draw_stroke(page, box, dy: float) -> None:
    """A horizontal stroke ``dy`` px below the centre of the (400 px, centred) drawing area."""
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + dy
    page.mouse.move(cx - 150, cy)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(cx - 150 + 15 * i, cy, steps=2)
    page.mouse.up()


def test_browser_draw_train_and_heatmap_changes(page):
    open_tab(page, "Flows")
    page.get_by_role("tab", name="Train live").click()
    page.locator("#flow-source").get_by_label("my drawing").check()
    page.locator("#flow-sketch").get_by_label("Brush").first.click()
    canvas = page.locator("#flow-sketch canvas").first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    for dy in (-110, -95):  # two strokes in the upper part of the canvas (y ≈ +2)
        _draw_stroke(page, box, dy)
    page.locator("#flow-steps input").fill("200")
    # record every picture the live heatmap shows (polling could miss a short-lived one)
    page.evaluate("""() => {
        window.flowFrames = [];
        const box = document.querySelector('#flow-live-heatmap');
        const seen = () => box.querySelectorAll('img').forEach(img => {
            if (img.src && window.flowFrames.at(-1) !== img.src) window.flowFrames.push(img.src);
        });
        new MutationObserver(seen).observe(box, {subtree: true, childList: true,
                                                 attributes: true, attributeFilter: ['src']});
    }""")
    page.locator("#flow-start").click()
    status = page.locator("#flow-train-status")
    page.wait_for_function("document.querySelector('#flow-train-status').innerText"
                           ".includes('Done')", timeout=180_000)
    assert "custom" in status.inner_text()
    frames = page.evaluate("window.flowFrames")
    assert len(frames) >= 3, frames  # the start (step 0), pictures while training, the end
    first, last = (page.request.get(src).body() for src in (frames[0], frames[-1]))
    assert last == _image_bytes(page, "#flow-live-heatmap")
    a = np.asarray(Image.open(io.BytesIO(first)).convert("L"), np.float32)
    b = np.asarray(Image.open(io.BytesIO(last)).convert("L"), np.float32)
    assert a.shape == b.shape and np.abs(a - b).mean() > 2.0  # the density moved
    # the fitted mass sits where the strokes were drawn (the N(0, I) start is symmetric)
    upper, lower = b[: b.shape[0] // 2].mean(), b[b.shape[0] // 2:].mean()
    assert upper > lower + 5


def test_stop_button_cancels_a_live_run():
    from playground.flow import register_models
    from playground.flow.tab import stop_training, train_live

    register_models()
    gen = train_live("built-in target", "rings", None, None, "glow", 2, 16, 1e-3, 20_000, 64, 0,
                     False)
    run_id = next(gen)[4]
    assert stop_training(run_id) == "Stopped: nothing was saved."
    *_, last = gen
    assert last[3].startswith("Stopped at step") and last[5] is None  # nothing registered
    assert stop_training(run_id) == "No run to stop."


def test_live_view_starts_on_the_untrained_flow_then_follows_the_latest():
    """The handler's per-frame logic (the browser test checks it end to end): the first picture
    is sample 0 (step 0), later ones the latest; a poll without a new sample keeps the last."""
    from playground.core.live import LiveRun
    from playground.flow.live import LiveView
    from playground.flow.train import resolve_config

    def sample(peak: int) -> dict:
        rows, cols = np.mgrid[:16, :16]
        logq = -((rows - peak) ** 2 + (cols - peak) ** 2) / 4.0  # a bump at (peak, peak)
        return {"logq": logq, "samples": np.zeros((5, 2)) + peak / 4}

    cfg = resolve_config("tiny")
    run = LiveRun("flow", "unused:builder", {}, "my-flow-abc", Path("unused"))
    view = LiveView(cfg, seed=4)
    empty = view.progress(run)
    assert empty.heatmap is None and empty.samples is None and "step 0/20" in empty.status
    run.samples += [(0, sample(2)), (10, sample(12))]
    run.history.append({"step": 10, "train_nll": 3.5, "time_s": 0.4})
    first = view.progress(run)
    assert first.status == "Training: step 10/20 · 0.4 s · train NLL 3.500 · seed 4"
    top_left = np.asarray(first.heatmap, np.float32)[:160, :160].mean()
    bottom_right = np.asarray(first.heatmap, np.float32)[160:, 160:].mean()
    assert top_left > bottom_right + 5  # sample 0's peak, not the latest one
    second = view.progress(run)
    pixels = np.asarray(second.heatmap, np.float32)
    assert pixels[160:, 160:].mean() > pixels[:160, :160].mean() + 5
    run.samples.clear()
    assert view.progress(run).heatmap is second.heatmap  # nothing new: keep the last picture
    run.result = "my-flow-abc (nsf, 8gaussians)"
    done = view.finished(run)
    assert done.model_name == run.result and done.status.startswith("Done: step 10/20")
    assert done.status.endswith("Saved as **my-flow-abc (nsf, 8gaussians)** (pick it above).")
    stopped = view.stopped(run)
    assert stopped.status == "Stopped at step 10/20 · 0.4 s · train NLL 3.500 · seed 4."
    assert stopped.model_name is None


def test_browser_share_link_reopens_the_density_and_its_settings(page, app_url):
    """gr.DeepLinkButton beside the results: the copied link opens a page showing the same
    heatmap with the same seed."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_url)
    open_tab(page, "Flows")
    share = page.locator("#flow-share button")
    share.wait_for(state="visible")
    page.get_by_label("Seed").filter(visible=True).first.fill("7")
    page.get_by_role("button", name="Show density").click()
    page.wait_for_function("[...document.querySelectorAll('#flow-heatmap img')]"
                           ".some(img => img.src.includes('seed7'))", timeout=60_000)
    heatmap = page.locator("#flow-heatmap img").first.get_attribute("src")
    share.click()
    link = ""
    for _ in range(50):  # the button copies once the server has saved the page's state
        link = page.evaluate("navigator.clipboard.readText()")
        if "deep_link=" in link:
            break
        page.wait_for_timeout(200)
    assert "deep_link=" in link, link
    again = page.context.new_page()
    again.goto(link)
    again.wait_for_selector("button[role='tab']")
    open_tab(again, "Flows")
    again.wait_for_function("[...document.querySelectorAll('#flow-heatmap img')]"
                            ".some(img => img.src.includes('seed7'))", timeout=30_000)
    assert again.locator("#flow-heatmap img").first.get_attribute("src") == heatmap
    assert again.get_by_label("Seed").filter(visible=True).first.input_value() == "7"
