"""The flow tab on a shared Space: outputs per session under unique names, ZeroGPU wrappers,
uploads checked before decoding, live-run waiting notes, hub ids."""

from __future__ import annotations

import numpy as np
from PIL import Image

from playground.core import sessions
from playground.core.repro import read_png_record
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
