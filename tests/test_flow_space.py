"""The flow tab on a shared Space: outputs per session under unique names, ZeroGPU wrappers,
uploads checked before decoding, live-run waiting notes, hub ids."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.core import sessions
from playground.core.errors import UserInputError
from playground.core.repro import read_png_record
from playground.data import user2d
from playground.flow import register_models
from playground.flow.inference import density_view, layers_view

register_models()


def test_outputs_are_fresh_files_in_the_session_folder():
    """Two users on the same seed get their own files (never one name rewritten under a
    download); the same request twice gives equal pictures under different names."""
    with sessions.use_session("alice"):
        a = density_view("rings", "flow-rings", n_samples=50, seed=1, resolution=16)
        a2 = density_view("rings", "flow-rings", n_samples=50, seed=1, resolution=16)
        la = layers_view("flow-rings", n_samples=20, seed=1)
    with sessions.use_session("bob"):
        b = density_view("rings", "flow-rings", n_samples=50, seed=1, resolution=16)
    paths = [a.heatmap, a.samples, a2.heatmap, a2.samples, la.image, b.heatmap, b.samples]
    assert len(set(paths)) == len(paths)
    alice, bob = sessions.output_dir("flow", "alice"), sessions.output_dir("flow", "bob")
    for path in (a.heatmap, a.samples, a2.heatmap, la.image):
        assert str(path).startswith(str(alice))
    assert str(b.heatmap).startswith(str(bob)) and str(b.samples).startswith(str(bob))
    assert np.array_equal(np.asarray(Image.open(a.samples)), np.asarray(Image.open(b.samples)))
    assert read_png_record(a.heatmap)["params"]["target"] == "rings"
    assert read_png_record(la.image)["params"]["view"] == "layers"
    sessions.end_session("alice")
    assert not alice.exists() and bob.exists()


FLOW_HANDLERS = ("show_density", "show_layers", "click_log_prob")


def test_every_model_handler_asks_for_a_zerogpu_slot_that_grows_with_the_work():
    from playground.core import zerogpu
    from playground.flow import tab  # noqa: F401  (decorating registers the handlers)

    handlers = {name: zerogpu.HANDLERS[f"playground.flow.tab.{name}"] for name in FLOW_HANDLERS}
    density = handlers["show_density"].duration
    small = density("8gaussians", "flow-8gaussians", 100, 0, False)
    usual = density("8gaussians", "flow-8gaussians", 1000, 0, False)
    large = density("8gaussians", "flow-8gaussians", 20_000, 0, False)
    assert 5 <= small <= usual < large <= 120
    assert large >= small + 15  # 20,000 samples ask for clearly more time than 100
    assert density("8gaussians", "flow-8gaussians", "lots", 0, False) == usual  # not a number
    layers = handlers["show_layers"].duration("flow-8gaussians", 0, False)
    click = handlers["click_log_prob"].duration("flow-8gaussians", "8gaussians", None)
    assert 5 <= click < layers <= 30


def test_handlers_are_plain_calls_off_zerogpu():
    from playground.flow import tab

    heat, samples, metrics, seed = tab.show_density("rings", "flow-rings", 100, 2, False)
    assert seed == 2 and metrics["flow"] == "flow-rings" and Image.open(heat).size == (400, 400)


def test_preload_puts_the_default_flow_in_the_loader_cache(monkeypatch):
    from playground.core import registry
    from playground.flow import inference, preload

    registry.clear_cache()
    preload()
    monkeypatch.setattr(inference, "_load", lambda source: (_ for _ in ()).throw(
        AssertionError(f"loaded {source} again")))
    assert inference.load_flow("flow-8gaussians") is not None  # served from the cache


@pytest.fixture(scope="module")
def pixel_bomb(tmp_path_factory) -> str:
    """A 13000×13000 PNG of about 20 kB (one bit per pixel, all zeros): 169 megapixels,
    just under PIL's own bomb limit, about 680 MB once decoded as RGBA."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(path, optimize=True)
    assert path.stat().st_size < 100_000
    return str(path)


@pytest.fixture(scope="module")
def drawing(tmp_path_factory) -> str:
    """A 400×400 RGBA canvas export (transparent) with a black stroke across the upper half."""
    pixels = np.zeros((400, 400, 4), np.uint8)
    pixels[95:106, 40:360] = (0, 0, 0, 255)  # rows ~100 → y ≈ +2
    path = tmp_path_factory.mktemp("drawing") / "drawing.png"
    Image.fromarray(pixels, "RGBA").save(path)
    return str(path)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_drawing_file_becomes_points_and_a_pixel_bomb_is_refused_unread(drawing, pixel_bomb):
    value = {"background": None, "layers": [drawing], "composite": drawing}
    pts = user2d.points_from_sketch(value, n_points=400, noise=0.02, seed=0)
    assert pts.shape == (400, 2) and pts[:, 1].mean().item() == pytest.approx(2.0, abs=0.1)
    rss, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(UserInputError, match=r"13000×13000 .* limit is 4 megapixels"):
        user2d.points_from_sketch({"background": None, "layers": [], "composite": pixel_bomb})
    assert time.perf_counter() - t0 < 0.5 and _rss_mb() - rss < 100


def test_sketchpad_hands_over_the_uploaded_files_undecoded(pixel_bomb):
    """Gradio's own ImageEditor would decode (and re-encode) the bomb in preprocess."""
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from playground.flow.tab import checked_sketchpad

    pad = checked_sketchpad()
    assert pad.get_block_name() == "imageeditor" and pad.type == "filepath"
    t0 = time.perf_counter()
    value = pad.preprocess(EditorData(background=None, layers=[FileData(path=pixel_bomb)],
                                      composite=FileData(path=pixel_bomb)))
    assert value == {"background": None, "layers": [pixel_bomb], "composite": pixel_bomb}
    assert time.perf_counter() - t0 < 0.2


def _sketch_value(path: str) -> dict:
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(path), "id": None}


def test_api_refuses_a_pixel_bomb_sketch_fast_with_the_limit(client, pixel_bomb):
    rss, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(Exception, match=r"limit is 4 megapixels") as info:
        client.predict("my drawing", "moons", _sketch_value(pixel_bomb), None, "nsf", 2, 16,
                       1e-3, 30, 64, 0, False, api_name="/flow_train")
    elapsed = time.perf_counter() - t0
    assert "13000×13000" in str(info.value)
    assert elapsed < 1.0, elapsed
    assert _rss_mb() - rss < 200  # the app runs in this process: nothing was decoded


def test_api_trains_on_a_drawing_file(client, drawing):
    out = client.predict("my drawing", "moons", _sketch_value(drawing), None, "realnvp", 2, 16,
                         5e-3, 30, 64, 0, False, api_name="/flow_train")
    status = out[3]
    assert status.startswith("Done: step 30/30") and "custom" in status


def test_canvas_blobs_are_written_as_they_are(pixel_bomb):
    """The browser sends the canvas layers as blobs (accept_blobs); they reach the handler as a
    file in gradio's cache with the same bytes, still undecoded."""
    from gradio.components.image_editor import EditorData

    from playground.flow.tab import checked_sketchpad

    pad = checked_sketchpad()
    raw = Path(pixel_bomb).read_bytes()
    pad.blob_storage["abc"] = type("Blobs", (), {"background": None, "layers": [raw],
                                                 "composite": raw})()
    value = pad.preprocess(EditorData(id="abc"))
    assert Path(value["composite"]).read_bytes() == raw and value["layers"] == [value["composite"]]
    assert "abc" not in pad.blob_storage


def test_a_queued_run_shows_what_it_waits_for_then_trains(monkeypatch):
    from playground.core import live as core_live
    from playground.flow.tab import stop_training, train_live

    monkeypatch.setattr(core_live, "SLOTS", core_live._Slots(1))
    with sessions.use_session("flow-first"):
        first = train_live("built-in target", "rings", None, None, "glow", 2, 16, 1e-3, 20_000,
                           64, 0, False)
        first_id = next(first)[4]
    with sessions.use_session("flow-second"):
        second = train_live("built-in target", "moons", None, None, "realnvp", 2, 16, 5e-3, 20,
                            64, 0, False)
        frame = next(second)
    assert frame[3].startswith("Queued: 1 training run(s) ahead of yours"), frame[3]
    assert stop_training(first_id) == "Stopped: nothing was saved."
    *_, last = second
    assert last[3].startswith("Done: step 20/20") and last[5]
    first.close()


def test_the_tab_has_a_share_link_button_beside_the_results():
    import gradio as gr

    from playground.flow.tab import build_tab

    with gr.Blocks() as demo:
        build_tab()
    rows = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "flow-share"]
    assert len(rows) == 1
    assert [type(c).__name__ for c in rows[0].children] == ["DeepLinkButton"]
