"""VAE tab: the API routes and a browser test that uploads photos and gets a GIF."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from playground.vae import SHIPPED, register_models
from tests.conftest import open_tab

register_models()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two 'photos' of different sizes and modes (RGB JPEG, RGBA PNG)."""
    folder = tmp_path_factory.mktemp("vae-photos")
    rng = np.random.default_rng(0)
    a = Image.fromarray((rng.random((120, 90, 3)) * 255).astype(np.uint8))
    a.save(folder / "a.jpg")
    b = Image.new("RGBA", (200, 260), (90, 60, 30, 255))
    b.save(folder / "b.png")
    return str(folder / "a.jpg"), str(folder / "b.png")


def test_api_interpolate_reconstruct_sample(client, photos, tmp_path):
    from gradio_client import handle_file

    strip, gif, prev_a, prev_b, mean_strip, info = client.predict(
        SHIPPED, None, handle_file(photos[0]), None, handle_file(photos[1]), 6, "linear", True,
        api_name="/vae_interpolate")
    assert Image.open(gif).n_frames == 10 and "6 frames, linear path" in info
    assert Image.open(prev_a).size == (128, 128) and Image.open(strip).width > 5 * 64
    assert mean_strip is not None
    recon, recon_info = client.predict(SHIPPED, None, handle_file(photos[0]),
                                       api_name="/vae_reconstruct")
    assert Image.open(recon).width > 2 * Image.open(recon).height and "MSE" in recon_info
    gallery, grid, sample_info, seed = client.predict(SHIPPED, 11, False, 3, 0.8,
                                                      api_name="/vae_sample")
    assert len(gallery) == 3 and seed == 11 and "Seed used: 11" in sample_info
    for frames in (0, 10**5):  # the slider's bounds (2..64) refuse these before our check
        with pytest.raises(Exception, match="(less|greater) than (minimum|maximum) value"):
            client.predict(SHIPPED, None, handle_file(photos[0]), None,
                           handle_file(photos[1]), frames, "linear", False,
                           api_name="/vae_interpolate")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="is not an image"):
        client.predict(SHIPPED, None, handle_file(str(bad)), api_name="/vae_reconstruct")
    with pytest.raises(Exception, match="between 1 and 64"):
        client.predict(SHIPPED, 0, False, 0, 1.0, api_name="/vae_sample")


def test_browser_uploads_photos_and_gets_a_gif(page, photos):
    open_tab(page, "VAE faces")
    page.locator("#vae-upload-a input[type=file]").set_input_files(photos[0])
    page.locator("#vae-upload-b input[type=file]").set_input_files(photos[1])
    page.wait_for_timeout(500)
    page.locator("#vae-interpolate").click()
    page.wait_for_selector("#vae-gif img[src*='.gif']", timeout=60_000)
    assert "upload sha256:" in page.locator("#vae-interp-info").inner_text()
    share = page.locator("#vae-share button")  # gr.DeepLinkButton beside the result
    assert share.is_visible() and "Share via Link" in share.inner_text()
