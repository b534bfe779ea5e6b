"""The tab through the running app: the /txt2img API and a browser that generates an image."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from playground.core import repro
from tests.conftest import assert_image_in_view, open_tab

SHIPPED = "txt2img-shapes"
PROMPT = "a large red circle at the center on a black background"


def _shipped_or_skip():
    from playground.core.registry import WEIGHTS_DIR

    if not (WEIGHTS_DIR / SHIPPED / "model_index.json").exists():
        pytest.skip("weights/txt2img-shapes is not installed")


def test_api_generates_png_with_record(client):
    _shipped_or_skip()
    gallery, seed, _info, record, strip, _scrub, _step = client.predict(
        SHIPPED, PROMPT, "", 4, 5.0, "DDIM", 1, 64, 64, 5, False, True, api_name="/txt2img")
    assert seed == 5 and len(gallery) == 1 and len(strip) == 4
    path = gallery[0]["image"]
    with Image.open(path) as image:
        assert image.size == (64, 64) and image.format == "PNG"
    stored = repro.read_png_record(path)  # the bytes served are the bytes we wrote
    assert stored["params"].pop("image_index") == 0
    assert stored == record and stored["params"]["prompt"] == PROMPT
    assert stored["params"]["steps"] == 4 and stored["seed"] == 5
    # the two autoguidance inputs, left out of this older-style call, take the model's own values
    assert (stored["params"]["autoguidance"], stored["params"]["autoguidance_max_t"]) == (2.0, 600)


def test_api_bad_input_is_a_clear_error(client):
    from gradio_client.exceptions import AppError

    # the slider itself refuses it first, with a clear message
    with pytest.raises(AppError, match="Steps must be between 1 and 100|greater than maximum"):
        client.predict(SHIPPED, PROMPT, "", 10_000, 5.0, "DDIM", 1, 64, 64, 0, False, False,
                       api_name="/txt2img")
    with pytest.raises(AppError, match="Prompt is empty"):
        client.predict(SHIPPED, "", "", 4, 5.0, "DDIM", 1, 64, 64, 0, False, False,
                       api_name="/txt2img")


def test_api_hub_model_offline_message(client, monkeypatch):
    from gradio_client.exceptions import AppError

    from playground.core import registry

    if registry.hub_reachable():
        pytest.skip("the hub is reachable here")
    with pytest.raises(AppError, match="offline|cannot reach the hub"):
        client.predict("stabilityai/sd-turbo", "a cat", "", 1, 0.0, "Euler", 1, 512, 512, 0,
                       False, False, api_name="/txt2img")


def test_browser_generates_an_image_and_shows_steps(page):
    _shipped_or_skip()
    open_tab(page, "Text to image")
    page.locator("#txt2img-steps").get_by_label("number input for Steps").fill("3")
    auto = page.get_by_label("number input for Autoguidance", exact=True)
    assert float(auto.input_value()) == 2.0  # the model's own setting
    auto.fill("0.5")
    auto.press("Enter")
    page.locator("#txt2img-generate").click()
    page.wait_for_selector("#txt2img-gallery img", timeout=90_000)
    page.wait_for_function(
        "() => document.querySelector('#txt2img-seed')?.innerText.includes('Seed used')")
    assert "Seed used: 0" in page.locator("#txt2img-seed").inner_text()
    assert page.locator("#txt2img-gallery img").count() >= 1
    # the whole image is in view: a lone image used to grow to the full width, taller than the
    # gallery, which showed only its top half
    assert_image_in_view(page, "#txt2img-gallery", taller_than=100)
    page.wait_for_function("document.querySelectorAll('#txt2img-strip img').length == 3")
    record = " ".join(page.locator("#txt2img-record").inner_text().split())
    assert re.search(r'"autoguidance" ?: 0\.5\b', record), record  # the value typed was used
    assert re.search(r'"autoguidance_max_t" ?: 600\b', record), record
    assert page.locator("#txt2img-stop").is_visible()  # Stop beside Generate


def test_browser_share_link_reopens_the_images_and_settings(page, browser, app_url):
    """gr.DeepLinkButton beside the results: its link opens a page with the same images,
    record and settings."""
    _shipped_or_skip()
    open_tab(page, "Text to image")
    page.locator("#txt2img-steps").get_by_label("number input for Steps").fill("2")
    page.get_by_label("Prompt", exact=True).filter(visible=True).fill(PROMPT + " ")
    page.get_by_label("Show every denoising step").uncheck()
    page.locator("#txt2img-generate").click()
    page.wait_for_selector("#txt2img-gallery img", timeout=90_000)
    record = page.locator("#txt2img-record").inner_text()
    # the button beside the seed line (gradio gives it its own id, not an elem_id)
    page.locator("#txt2img-seed").locator("xpath=..").get_by_role(
        "button", name="Share via Link").click()
    page.get_by_role("button", name="Link Copied!").filter(visible=True).wait_for(timeout=10_000)
    link = page.evaluate("() => fetch('gradio_api/deep_link?session_hash=' + "
                         "window.__gradio_session_hash__).then(r => r.json())")
    assert re.fullmatch(r"[\w-]+", link), link
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        other = context.new_page()
        other.set_default_timeout(30_000)
        other.goto(f"{app_url}/?deep_link={link}")
        other.wait_for_selector("button[role='tab']")
        open_tab(other, "Text to image")
        other.wait_for_selector("#txt2img-gallery img")
        assert other.locator("#txt2img-record").inner_text() == record
        assert other.get_by_label("Prompt", exact=True).filter(
            visible=True).input_value() == PROMPT + " "
        assert other.locator("#txt2img-steps").get_by_label(
            "number input for Steps").input_value() == "2"
    finally:
        context.close()


def test_the_tab_opens_at_the_guidance_the_card_was_measured_at():
    import json

    from app import build_app
    from playground.core.registry import WEIGHTS_DIR
    from playground.txt2img.evaluate import (
        EVAL_AUTOGUIDANCE,
        EVAL_AUTOGUIDANCE_MAX_T,
        EVAL_GUIDANCE,
    )

    _shipped_or_skip()
    card = json.loads((WEIGHTS_DIR / SHIPPED / "adherence.json").read_text())
    blocks = build_app().blocks.values()
    sliders = [b for b in blocks if getattr(b, "label", None) == "Guidance scale"]
    assert len(sliders) == 1
    assert sliders[0].value == card["guidance"] == EVAL_GUIDANCE
    sliders = [b for b in blocks if getattr(b, "label", None) == "Autoguidance"]
    assert len(sliders) == 1 and EVAL_AUTOGUIDANCE > 0
    assert sliders[0].value == card["autoguidance"] == EVAL_AUTOGUIDANCE
    sliders = [b for b in blocks if getattr(b, "label", None) == "Autoguidance up to timestep"]
    assert len(sliders) == 1
    assert sliders[0].value == card["autoguidance_max_t"] == EVAL_AUTOGUIDANCE_MAX_T



@pytest.mark.xfail(strict=True, reason="issue 26: the first model draws the red circle on a "
                   "dark teal square with a frame and a halo (screenshot: tint 12.6, frame 13.0, "
                   "halo 16.7); the second model is to pass it")
def test_browser_default_picture_is_clean_in_a_screenshot(page):
    """Issue 26's first look, as a visitor sees it: the tab's own example prompt at every
    default, the picture as drawn on the page (a Playwright screenshot of it, scaled back to the
    model's size with a box filter), measured by the artefact checker (tint of the background
    against the named colour, a frame inside the edge, a halo around the object, object mass
    outside its box) against ``artefacts.THRESHOLDS``."""
    import io

    from playground.txt2img import EXAMPLES, artefacts
    from playground.txt2img.shapes import Obj, Scene

    _shipped_or_skip()
    assert EXAMPLES[0] == PROMPT
    scene = Scene((Obj("circle", "red", "large", "center"),), "black")
    assert scene.caption == PROMPT
    open_tab(page, "Text to image")
    page.locator("#txt2img-generate").click()
    shown = page.locator("#txt2img-gallery img").first
    shown.wait_for(timeout=90_000)
    page.wait_for_function("document.querySelector('#txt2img-gallery img').naturalWidth > 0")
    native = shown.evaluate("img => img.naturalWidth")
    # page furniture over the picture, not part of it: the gallery's label floats over its
    # top-left corner and its corners are rounded off (page background shows there)
    page.add_style_tag(content="#txt2img-gallery .block-label, #txt2img-gallery label"
                               " { visibility: hidden !important; }"
                               " #txt2img-gallery img { border-radius: 0 !important; }")
    with Image.open(io.BytesIO(shown.screenshot())) as shot:
        assert min(shot.size) >= 2 * native  # shown enlarged, not as a thumbnail
        # the element's edges fall between screen pixels, which blend in the page: 1 px off
        inner = shot.convert("RGB").crop((1, 1, shot.width - 1, shot.height - 1))
        on_page = artefacts.measure(scene, inner.resize((native, native), Image.BOX))
    src = shown.get_attribute("src")
    png = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + src)
    with Image.open(io.BytesIO(png.body())) as image:
        in_file = artefacts.measure(scene, image.convert("RGB"))
    print(f"default picture ({native} px), on the page: {on_page}; in its file: {in_file}")
    # the screenshot measures what the file holds (display scaling adds no artefact)
    assert abs(on_page.tint - in_file.tint) <= 2.0, (on_page, in_file)
    assert abs(on_page.frame - in_file.frame) <= 2.5, (on_page, in_file)
    limits = artefacts.THRESHOLDS
    assert on_page.tint <= limits.tint and on_page.frame <= limits.frame, on_page
    assert on_page.halo <= limits.halo and on_page.ghost <= limits.ghost, on_page
