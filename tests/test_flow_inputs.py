"""Bad input to the flow tab: drawings, CSV files, training settings; each gets a clear message."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from playground.core.errors import UserInputError
from playground.data import user2d
from playground.data.targets2d import BOX
from playground.flow import live, register_models
from playground.flow.inference import density_view, log_prob_at

register_models()


def sketch(mask_fn, size: int = 200) -> dict:
    """A Sketchpad-like value: transparent RGBA canvas with black strokes where mask_fn is true."""
    rows, cols = np.mgrid[:size, :size]
    img = np.zeros((size, size, 4), np.uint8)
    img[mask_fn(rows, cols)] = (0, 0, 0, 255)
    return {"background": None, "layers": [img], "composite": img}


def test_drawn_strokes_become_noisy_points_in_the_box():
    # a horizontal stroke across the upper half of the canvas (rows 48-52 → y ≈ +2)
    value = sketch(lambda r, c: (abs(r - 50) <= 2) & (c > 20) & (c < 180))
    pts = user2d.points_from_sketch(value, n_points=500, noise=0.05, seed=1)
    assert pts.shape == (500, 2) and pts.dtype == torch.float32
    assert pts[:, 1].mean().item() == pytest.approx(BOX - 50.5 * 2 * BOX / 200, abs=0.05)
    assert pts[:, 0].min() < -2.5 and pts[:, 0].max() > 2.5
    again = user2d.points_from_sketch(value, n_points=500, noise=0.05, seed=1)
    assert torch.equal(pts, again)


@pytest.mark.parametrize("value,message", [
    (None, "Draw something"),
    ({"background": None, "layers": [], "composite": None}, "Draw something"),
    (sketch(lambda r, c: r < 0), "empty"),
    (sketch(lambda r, c: (abs(r - 100) <= 3) & (abs(c - 100) <= 3)), "single dot"),
])
def test_empty_or_one_point_drawing_is_refused(value, message):
    with pytest.raises(UserInputError, match=message):
        user2d.points_from_sketch(value)


def write(tmp_path, text: str, name: str = "pts.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_header_is_read_and_fitted_into_the_box(tmp_path):
    rows = "\n".join(f"{i},{2 * i + 100}" for i in range(50))
    points = user2d.read_csv_points(write(tmp_path, "x,y\n" + rows + "\n\n"))
    assert points.shape == (50, 2) and points[3].tolist() == [3.0, 106.0]
    fitted, info = user2d.fit_to_box(points)
    assert fitted.abs().max().item() == pytest.approx(user2d.FIT_HALF_WIDTH, abs=1e-5)
    assert info["scale"] == pytest.approx(3.5 / 49)


@pytest.mark.parametrize("text,message", [
    ("x,y\n1,2\n3\n", "expected two"),
    ("x,y\n1,2\nfoo,bar\n", "not two numbers"),
    ("1,2\n" * 30 + "nan,1\n", "NaN or infinity"),
    ("1,2\n" * 30 + "1,inf\n", "NaN or infinity"),
    ("1,2\n" * 5, "at least 20"),
    ("", "at least 20"),
    ("1,1\n" * 30, "identical"),
])
def test_malformed_csv_is_refused(tmp_path, text, message):
    with pytest.raises(UserInputError, match=message):
        user2d.points_from_csv(write(tmp_path, text))


def test_ten_million_row_csv_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:  # ~40 MB of "0,0\n" written as a sparse-ish file
        handle.truncate(10_000_000 * 4)
    t0 = time.perf_counter()
    with pytest.raises(UserInputError, match="too big"):
        user2d.read_csv_points(str(path))
    assert time.perf_counter() - t0 < 0.5


def test_too_many_rows_stop_reading_early(tmp_path):
    path = write(tmp_path, "1,2\n" * 2000)
    with pytest.raises(UserInputError, match="more than 1,000 rows"):
        user2d.read_csv_points(path, max_rows=1000)


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": 0}, "Learning rate"), ({"lr": 10}, "Learning rate"), ({"lr": "abc"}, "Learning rate"),
    ({"lr": float("nan")}, "finite"), ({"steps": 0}, "Steps"), ({"steps": 10**9}, "Steps"),
    ({"steps": 12.5}, "whole number"), ({"batch_size": 1}, "Batch size"),
    ({"depth": 0}, "Depth"), ({"width": 10_000}, "Hidden width"),
    ({"flow_type": "maf"}, "Flow type"), ({"target": "nope"}, "Unknown target"),
])
def test_bad_training_settings(kwargs, message):
    args = {"flow_type": "nsf", "depth": 2, "width": 16, "lr": 1e-3, "steps": 20,
            "batch_size": 64, "target": "8gaussians"} | kwargs
    with pytest.raises(UserInputError, match=message):
        live.live_config(**args)


@pytest.mark.parametrize("kwargs,message", [
    ({"target": "nope"}, "Unknown target"), ({"flow": "../../etc/passwd"}, "paths"),
    ({"n_samples": 0}, "Number of samples"), ({"n_samples": 10**7}, "Number of samples"),
    ({"resolution": 5000}, "Resolution"),
])
def test_density_view_bad_input(kwargs, message):
    args = {"target": "8gaussians", "flow": "flow-8gaussians"} | kwargs
    with pytest.raises(UserInputError, match=message):
        density_view(**args)


def test_log_prob_at_rejects_non_finite_points():
    with pytest.raises(UserInputError, match="finite"):
        log_prob_at("flow-8gaussians", float("inf"), 0.0)


def test_click_on_heatmap_gives_exact_log_density():
    import gradio as gr

    from playground.flow.tab import HEAT_SIZE, click_log_prob

    # pixel (col, row) → the centre of the right-hand Gaussian, (2.83, 0)
    col = round((2.83 + BOX) / (2 * BOX) * HEAT_SIZE)
    out = click_log_prob("flow-8gaussians", "8gaussians",
                         gr.SelectData(None, {"index": [col, HEAT_SIZE // 2], "value": None}))
    assert out["x"] == pytest.approx(2.83, abs=0.03) and abs(out["y"]) < 0.03
    assert out["log_q"] == pytest.approx(out["log_p_target"], abs=0.15)
    far = log_prob_at("flow-8gaussians", 0.0, 0.0, "8gaussians")
    assert far.log_q < out["log_q"] - 5  # the empty centre is far less likely


@pytest.mark.parametrize("view", ["density", "layers", "point"])
def test_a_request_resolves_the_registry_entry_once(view, monkeypatch):
    from playground.core import registry
    from playground.flow import inference

    register_models()
    calls = []
    real = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda *a: calls.append(a) or real(*a))
    if view == "density":
        out = inference.density_view("rings", "flow-rings", n_samples=50, resolution=16)
        assert isinstance(out, inference.DensityView) and out.metrics["flow"] == "flow-rings"
        assert out.metrics["record"]["model"] == "flow-rings"
    elif view == "layers":
        out = inference.layers_view("flow-rings", n_samples=20)
        assert isinstance(out, inference.LayersView) and len(out.layers) == 6
        assert out.table()[0] == {"step": 1, "layer": "6: spline (autoregressive)",
                                  "mean_log_det": out.layers[0].mean_log_det}
    else:
        out = inference.log_prob_at("flow-rings", 1.0, 0.0)
        assert out.log_p_target is None and set(out.as_dict()) == {"x", "y", "log_q"}
    assert calls == [("flow", "flow-rings")]
