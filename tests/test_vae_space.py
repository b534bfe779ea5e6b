"""The VAE tab as a Space serves it: ZeroGPU slots, start-up preload, uploads checked before
decoding, held-out faces by label over the API, live-run queue notes, deep links, hub ids."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from playground.core import registry
from playground.core.repro import read_png_record
from playground.vae import SHIPPED, register_models

pytest_plugins = ["tests.hub_fixtures"]
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



# ---- hub ids: our ConvVAE and a diffusers AutoencoderKL, told apart by their config.json ----

def test_hub_convvae_and_autoencoderkl_load_through_the_tab(fake_hub, hub_cache):
    import numpy as np

    from playground.vae.codec import load_codec
    from playground.vae.tab import on_interpolate, on_reconstruct, on_sample

    registry.clear_cache()
    images, grid, info, seed = on_sample("test/vae-olivetti", 4, False, 2, 1.0)
    record = read_png_record(grid)
    assert record["revision"] == fake_hub.repos["test/vae-olivetti"].sha
    assert record["model"] == "test/vae-olivetti" and record["model_hash"].startswith("hub:")
    assert {d.rsplit("/", 1)[-1] for d in fake_hub.downloads()} >= {"config.json",
                                                                       "model.safetensors"}
    local_images, local_grid, *_ = on_sample(SHIPPED, 4, False, 2, 1.0)  # same weights
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(images, local_images, strict=True))
    assert "revision" not in read_png_record(local_grid)  # a local folder: its hash instead

    codec = load_codec("test/txt2img-vae")
    assert (codec.kind, codec.size, codec.channels) == ("autoencoderkl", 64, 3)
    recon, recon_info = on_reconstruct("test/txt2img-vae", "person 10 · photo 0", None)
    kl_sha = fake_hub.repos["test/txt2img-vae"].sha
    assert read_png_record(recon)["revision"] == kl_sha and "bits/dim" not in recon_info
    strip, gif, prev_a, *_rest = on_interpolate("test/txt2img-vae", "person 10 · photo 0", None,
                                                "person 12 · photo 0", None, 3, "linear", False)
    assert read_png_record(strip)["revision"] == kl_sha and prev_a.mode == "RGB"


@pytest.mark.parametrize("hub_id, why", [
    ("test/gpt-austen", "its config.json describes gpt2"),
    ("test/txt2img-shapes", "it has no config.json \\(a diffusers pipeline"),
])
def test_a_hub_repo_that_is_not_a_vae_is_refused_clearly(fake_hub, hub_cache, hub_id, why):
    import gradio as gr

    from playground.vae.tab import on_sample

    registry.clear_cache()
    with pytest.raises(gr.Error, match=f"'{hub_id}' is not a VAE this tab can load: {why}"):
        on_sample(hub_id, 0, False, 1, 1.0)
    assert not any(d.endswith(".safetensors") for d in fake_hub.downloads())  # config only


def test_hub_ids_over_the_api_carry_their_commit(client, fake_hub, hub_cache):
    registry.clear_cache()
    _, grid, info, _ = client.predict("test/vae-olivetti", 5, False, 2, 1.0,
                                      api_name="/vae_sample")
    assert read_png_record(grid)["revision"] == fake_hub.repos["test/vae-olivetti"].sha
    recon, recon_info = client.predict("test/txt2img-vae", "person 10 · photo 1", None,
                                       api_name="/vae_reconstruct")
    record = read_png_record(recon)
    assert record["revision"] == fake_hub.repos["test/txt2img-vae"].sha
    assert record["params"]["face"] == "person 10 · photo 1" and "MSE" in recon_info


def test_hub_downloads_show_progress_over_the_api(client, fake_hub, hub_cache, monkeypatch):
    """huggingface_hub's tqdm bar reaches the client (track_tqdm), though the registry loads
    hub models in a thread of its own."""
    import inspect

    import gradio as gr
    from huggingface_hub import constants

    from playground.vae import tab

    for name in MODEL_HANDLERS:
        default = inspect.signature(getattr(tab, name)).parameters["progress"].default
        assert isinstance(default, gr.Progress) and default.track_tqdm, name
    registry.clear_cache()
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # a bar update per 64 kB
    fake_hub.delay_per_chunk = 0.02
    job = client.submit("test/vae-olivetti", 5, False, 1, 1.0, api_name="/vae_sample")
    seen = []
    while not job.done():
        seen += [(p.desc or "", p.length) for p in job.status().progress_data or []]
        time.sleep(0.05)
    job.result()
    size = fake_hub.repos["test/vae-olivetti"].files["model.safetensors"].size
    assert any("model.safetensors" in desc and length == size for desc, length in seen), seen


def test_a_stopped_hub_gives_a_clear_message_fast_and_the_app_keeps_serving(
        client, fake_hub, hub_cache):
    import gradio as gr

    from playground.vae.tab import on_sample

    registry.clear_cache()
    fake_hub.stop()
    registry._reach_cache.clear()
    message = "offline or cannot reach the hub"
    t0 = time.perf_counter()
    with pytest.raises(gr.Error, match=message):
        on_sample("test/vae-olivetti", 0, False, 1, 1.0)
    assert time.perf_counter() - t0 < 10
    t0 = time.perf_counter()
    with pytest.raises(Exception, match=message):
        client.predict("test/txt2img-vae", 0, False, 1, 1.0, api_name="/vae_sample")
    assert time.perf_counter() - t0 < 10
    _, _, info, _ = client.predict(SHIPPED, 2, False, 1, 1.0, api_name="/vae_sample")
    assert "Seed used: 2" in info
