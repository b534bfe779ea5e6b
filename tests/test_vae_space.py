"""The VAE tab as a Space serves it: ZeroGPU slots, start-up preload, uploads checked before
decoding, held-out faces by label over the API, live-run queue notes, deep links, hub ids."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from playground.vae import SHIPPED, register_models

register_models()
MODEL_HANDLERS = ("on_interpolate", "on_reconstruct", "on_sample", "on_explore")


def test_every_model_handler_asks_for_a_zerogpu_slot_sized_by_the_request():
    from playground.core import zerogpu
    from playground.vae import tab  # noqa: F401  (registers the handlers)

    handlers = {name: zerogpu.HANDLERS[f"playground.vae.tab.{name}"] for name in MODEL_HANDLERS}
    interp = handlers["on_interpolate"].duration
    small = interp(SHIPPED, None, None, None, None, 2, "linear", False)
    large = interp(SHIPPED, None, None, None, None, 64, "linear", True)
    assert zerogpu.MIN_DURATION_S <= small < large <= zerogpu.MAX_DURATION_S
    assert interp(SHIPPED, None, None, None, None, "x", "linear", False) <= 60  # not a number
    sample = handlers["on_sample"].duration
    assert 5 <= sample(SHIPPED, 0, False, 1, 1.0) < sample(SHIPPED, 0, False, 64, 1.0) <= 120
    # a hub id adds time to download it inside the slot
    assert sample("test/txt2img-vae", 0, False, 1, 1.0) > sample(SHIPPED, 0, False, 1, 1.0)
    for name in ("on_reconstruct", "on_explore"):
        assert 5 <= handlers[name].duration(SHIPPED, None, None) <= 30


def test_preload_puts_the_shipped_model_in_the_loader_cache(monkeypatch):
    from playground import vae
    from playground.core import registry
    from playground.vae.codec import load_codec

    registry.clear_cache()
    loaded = []
    original = registry.load_model
    monkeypatch.setattr(registry, "load_model",
                        lambda *a, **k: loaded.append(a[1]) or original(*a, **k))
    vae.preload()
    assert loaded == [SHIPPED]
    monkeypatch.setattr(registry, "_load_with_timeout", lambda *a: pytest.fail("loaded twice"))
    assert load_codec(SHIPPED).kind == "conv"  # from the cache


@pytest.fixture(scope="module")
def pixel_bomb(tmp_path_factory) -> str:
    """A 13000×13000 PNG, tiny on disk (uniform grey compresses to a few hundred kB)."""
    import warnings

    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.new("L", (13000, 13000), 200).save(path)
    assert path.stat().st_size < 1_000_000
    return str(path)


def test_a_pixel_bomb_is_refused_over_the_api_with_the_limit_named(client, pixel_bomb):
    from gradio_client import handle_file

    limit = r"13000×13000 = 169\.0 megapixels; the limit is 16 megapixels"
    t0 = time.perf_counter()
    with pytest.raises(Exception, match=limit):
        client.predict(SHIPPED, None, handle_file(pixel_bomb), api_name="/vae_reconstruct")
    with pytest.raises(Exception, match=limit):
        client.predict(SHIPPED, None, handle_file(pixel_bomb), None, handle_file(pixel_bomb), 4,
                       "linear", False, api_name="/vae_interpolate")
    assert time.perf_counter() - t0 < 10
    # the server is still serving
    _, _, info, _ = client.predict(SHIPPED, 1, False, 1, 1.0, api_name="/vae_sample")
    assert "Seed used: 1" in info


def test_heldout_faces_are_addressable_over_the_api_by_label(client):
    """The dropdowns' choices exist when the tab is built, not only once a browser loads it."""

    strip, gif, prev_a, prev_b, mean_strip, info = client.predict(
        SHIPPED, "person 10 · photo 0", None, "person 30 · photo 9", None, 4, "spherical",
        False, api_name="/vae_interpolate")
    assert info.startswith("person 10 · photo 0 → person 30 · photo 9, 4 frames")
    assert Image.open(strip).width > 4 * 128 and mean_strip is None
    recon, recon_info = client.predict(SHIPPED, "person 10 · photo 3", None,
                                       api_name="/vae_reconstruct")
    assert "MSE" in recon_info and "bits/dim" in recon_info
    from playground.core.repro import read_png_record

    assert read_png_record(recon)["params"]["face"] == "person 10 · photo 3"
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(SHIPPED, "person 99 · photo 0", None, api_name="/vae_reconstruct")


def test_the_tab_has_a_deep_link_button_and_labelled_face_choices():
    import gradio as gr

    from playground.vae.tab import build_tab

    with gr.Blocks() as demo:
        build_tab()
    blocks = list(demo.blocks.values())
    assert sum(isinstance(b, gr.DeepLinkButton) for b in blocks) == 1
    faces = [b for b in blocks
             if isinstance(b, gr.Dropdown) and "held-out" in (b.label or "").lower()]
    assert len(faces) == 3 and all(len(b.choices) == 50 for b in faces)
    assert [b.value for b in faces] == ["person 10 · photo 0", "person 12 · photo 0",
                                        "person 10 · photo 0"]
