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
