"""GAN inside views in the app: ZeroGPU slots, the one upload route, the API by api_name and
each new view in the browser."""

from __future__ import annotations

import pytest
from PIL import Image

from playground.core import zerogpu
from playground.gan import SHIPPED, register_models
from tests.conftest import fill_field, open_tab

register_models()


def test_model_handlers_ask_for_sane_zerogpu_slots():
    from playground.gan import tab_inside  # noqa: F401  (registers its handlers)

    edit = zerogpu.HANDLERS["playground.gan.tab_inside.on_edit"].duration
    interpolate = zerogpu.HANDLERS["playground.gan.tab_inside.on_interpolate_found"].duration
    small = edit(SHIPPED, "seed", 0, "sefa", 3, 1, 3.0, 2, 0, 3, 0, 4, 0)
    assert 5 <= small < edit(SHIPPED, "seed", 0, "sefa", 9, 1, 3.0, 2, 0, 3, 0, 4, 0) <= 60
    assert 5 <= interpolate(SHIPPED, "seed", 0, "seed", 1, 2, "linear") < interpolate(
        SHIPPED, "seed", 0, "seed", 1, 32, "linear") <= 60
    assert edit("test/gan", "seed", 0, "sefa", 3, 1, 3.0, 2, 0, 3, 0, 4, 0) > small  # hub


def test_the_only_upload_is_find_this_face():
    """The one file input of the tab feeds "find this face", whose reader goes through
    core.uploads (test_find_refuses_bad_uploads); no other GAN event reads a file or image."""
    import gradio as gr

    from playground.gan import tab as gan_tab

    with gr.Blocks() as demo:
        gan_tab.build_tab()
    uploads = (gr.Image, gr.Gallery, gr.File, gr.ImageEditor, gr.Sketchpad, gr.UploadButton)
    reading = {fn.api_name for fn in demo.fns.values()
               if any(isinstance(c, uploads) for c in fn.inputs)}
    assert reading == {"gan_find"}


def test_api_directions_and_bad_input(client):
    pair, walks, info, table, png = client.predict(
        SHIPPED, "seed", 4, "pca", 3, 1, 3.0, 2, -2.0, 3, 0, 4, 0, api_name="/gan_directions")
    assert Image.open(pair).size == (2 * (2 * 66 - 2), 2 * (2 * 66 - 2))
    assert Image.open(walks).size[0] == 2 * (3 * 66 - 2) and "Start: seed 4" in info
    assert [row[0] for row in table["data"]] == [1, 2]
    with pytest.raises(Exception, match="picked twice"):
        client.predict(SHIPPED, "seed", 4, "pca", 3, 1, 3.0, 1, -2.0, 3, 0, 4, 0,
                       api_name="/gan_directions")


def test_browser_directions_view_shows_pictures(page):
    open_tab(page, "GAN faces")
    page.get_by_text("Latent directions (SeFa / PCA)", exact=True).first.click()
    page.locator("#gan-edit-go").click()
    page.wait_for_selector("#gan-edit img")
    page.wait_for_selector("#gan-walks img")
    assert "nearest photo is person" in page.inner_text("#gan-edit-info")


def test_browser_find_view_shows_progress_result_and_interpolation(page):
    open_tab(page, "GAN faces")
    page.get_by_text("Find this face", exact=True).first.click()
    fill_field(page, "#gan-find-photo input", "17")
    fill_field(page, "#gan-find-steps input", "40")
    page.locator("#gan-find-go").click()
    page.wait_for_selector("#gan-find-result img", timeout=120_000)
    assert "Done: 'found photo 17" in page.inner_text("#gan-find-status")
    page.locator("#gan-find-interpolate").click()
    page.wait_for_selector("#gan-find-strip img")
