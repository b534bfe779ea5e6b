"""The inside views of the Text to image tab through the running app, with the shipped model:
/txt2img streams its live preview and ends with the full answer, /txt2img_attention and
/txt2img_grid over gradio_client, the attention view on a hub pipeline (the fake hub), and each
view in headless Chromium showing a picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from playground.core import registry, repro
from tests.conftest import fill_field, open_tab

pytest_plugins = ["tests.hub_fixtures"]  # the fake_hub fixture

SHIPPED = "txt2img-shapes"
PROMPT = "a large red circle at the center on a black background"
WORDS = 10  # a, large, red, circle, at, the, center, on, black, background ("a" twice)


@pytest.fixture(autouse=True)
def _shipped_or_skip():
    if not (registry.WEIGHTS_DIR / SHIPPED / "model_index.json").exists():
        pytest.skip("weights/txt2img-shapes is not installed")


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_api_txt2img_streams_its_preview_and_ends_with_the_full_answer(client):
    job = client.submit(SHIPPED, PROMPT, "", 6, 4.0, "DDIM", 2, 64, 64, 1, False, True, 2.0,
                        600, 0, 0.0, True, api_name="/txt2img")
    gallery, seed, info, record, strip, _scrub, live = job.result(timeout=120)
    assert seed == 1 and len(gallery) == 2 and len(strip) == 6 and "Seed used" in info
    assert len(job.outputs()) >= 2  # at least one preview frame before the answer
    assert Image.open(live).size == (2 * 256 + 4, 256)  # both 64 px images, enlarged 4x
    assert "variation_seed" not in record["params"]  # strength 0: no variation
    varied = client.predict(SHIPPED, PROMPT, "", 6, 4.0, "DDIM", 1, 64, 64, 1, False, False,
                            2.0, 600, 7, 0.5, False, api_name="/txt2img")
    assert varied[3]["params"]["variation_seed"] == 7
    assert not (pixels(varied[0][0]["image"]) == pixels(gallery[0]["image"])).all()


def test_api_attention_route_with_record_and_clear_errors(client):
    from gradio_client.exceptions import AppError

    overlay, strip, info, record = client.predict(
        SHIPPED, PROMPT, "", 4, 4.0, "DDIM", 64, 64, 3, False, 0.0, 1000, "circle",
        api_name="/txt2img_attention")
    assert Image.open(overlay).size == (256, 256) and "*circle* received" in info
    assert repro.read_png_record(overlay) == record and record["params"]["word"] == "circle"
    assert len(strip) == WORDS and strip[3]["caption"].startswith("circle · ")
    again = client.predict(SHIPPED, PROMPT, "", 4, 4.0, "DDIM", 64, 64, 3, False, 0.0, 1000,
                           "circle", api_name="/txt2img_attention")
    assert (pixels(again[0]) == pixels(overlay)).all()  # same seed, same map
    with pytest.raises(AppError, match="'star' is not a word of the prompt"):
        client.predict(SHIPPED, PROMPT, "", 4, 4.0, "DDIM", 64, 64, 3, False, 0.0, 1000,
                       "star", api_name="/txt2img_attention")


def test_api_grid_route_with_record_and_the_cap(client):
    from gradio_client.exceptions import AppError

    args = (SHIPPED, PROMPT, "", 3, 4.0, "DDIM", 64, 64, 0, False, 0.0, 1000, 1, 0.0,
            "Guidance", "1, 4", "Prompt S/R", "red, blue")
    path, info, record = client.predict(*args, api_name="/txt2img_grid")
    assert "4/4 cells" in info and record["params"]["cells_made"] == 4
    assert repro.read_png_record(path) == record and record["params"]["y_values"] == [
        "red", "blue"]
    again = client.predict(*args, api_name="/txt2img_grid")[0]
    assert (pixels(again) == pixels(path)).all()
    with pytest.raises(AppError, match="at most 16 per grid"):
        client.predict(*args[:14], "Seed", "0-5", "Guidance", "1, 2, 3",
                       api_name="/txt2img_grid")


def test_attention_on_a_hub_pipeline(fake_hub, tmp_path):
    from playground.txt2img.attention import explain

    view = explain("test/txt2img-shapes", PROMPT, "circle", steps=2, guidance=4.0, seed=0,
                   width=64, height=64, out_dir=tmp_path)
    assert view.record["revision"] == fake_hub.repos["test/txt2img-shapes"].sha
    assert view.chosen.latent.shape == (32, 32) and 0 < view.chosen.share < 1


def test_browser_each_new_view_shows_a_picture(page):
    open_tab(page, "Text to image")
    page.locator("#txt2img-steps").get_by_label("number input for Steps").fill("8")
    page.locator("#txt2img-generate").click()
    page.wait_for_selector("#txt2img-gallery img", timeout=90_000)
    live = page.locator("#txt2img-live img").first
    live.wait_for()
    # enlarged, not 64 px (waits for the picture to finish loading: 0 until then)
    page.wait_for_function("document.querySelector('#txt2img-live img').naturalWidth >= 256")
    assert live.bounding_box()["height"] > 150

    page.get_by_text("Attention: which word drives which pixels").click()
    page.locator("#txt2img-attention-run").click()
    page.wait_for_selector("#txt2img-attention img", timeout=90_000)
    assert page.locator("#txt2img-attention img").first.bounding_box()["height"] > 150
    page.wait_for_function(f"document.querySelectorAll('#txt2img-attention-strip img').length"
                           f" == {WORDS}")
    assert "received" in page.locator("#txt2img-attention-info").inner_text()

    page.get_by_text("X/Y grid: one image per pair of settings").click()
    fill_field(page, "#txt2img-grid-x textarea", "1, 4")
    fill_field(page, "#txt2img-grid-y textarea", "0, 1")
    page.locator("#txt2img-grid-run").click()
    page.locator("#txt2img-grid-info").get_by_text("4/4 cells.").wait_for(timeout=90_000)
    assert page.locator("#txt2img-grid img").first.bounding_box()["height"] > 150
