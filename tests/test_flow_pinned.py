"""Pinned outputs of the shipped flows (diffusers' ``expected_slice`` habit).

The numbers were recorded from the shipped weights on the code before the issue-25 refactor; a
silent numeric change (a refactor, a zuko/torch upgrade) fails here loudly.
"""

from __future__ import annotations

import pytest
import torch

from playground.core.registry import WEIGHTS_DIR
from playground.flow import SHIPPED_TARGETS, register_models, shipped_name
from playground.flow.model import FlowModel

POINTS = torch.tensor([[0.0, 0.0], [2.83, 0.0], [-1.0, 1.5]])
# target: (log q at POINTS, first of 5 samples drawn with torch.Generator().manual_seed(0))
PINNED = {
    "8gaussians": ([-10.2474, -1.7814, -7.161], [3.1721, -0.5031]),
    "checkerboard": ([-2.0815, -4.7278, -14.1789], [3.4597, -1.1054]),
    "rings": ([-8.2487, -3.2531, -3.8015], [2.9249, 0.028]),
    "moons": ([-8.8889, -8.7172, -7.3859], [3.6652, 0.3195]),
    "pinwheel": ([-5.7804, -7.6194, -4.0873], [1.4925, -0.539]),
    "spirals": ([-4.4851, -9.3866, -7.1929], [1.1426, 1.185]),
}
TOL = 2e-3


def test_every_shipped_flow_is_pinned():
    assert set(PINNED) == set(SHIPPED_TARGETS)


@pytest.mark.parametrize("target", SHIPPED_TARGETS)
def test_shipped_flow_log_density_and_first_sample(target):
    model = FlowModel.from_pretrained(str(WEIGHTS_DIR / shipped_name(target))).eval()
    expected_logq, expected_sample = PINNED[target]
    with torch.no_grad():
        logq = model.log_prob(POINTS)
        first = model.sample(5, torch.Generator().manual_seed(0))[0]
    assert logq.tolist() == pytest.approx(expected_logq, abs=TOL)
    assert first.tolist() == pytest.approx(expected_sample, abs=TOL)


def test_tab_density_metrics_and_layer_table_are_pinned():
    """Through the tab handlers (the inference path the refactor touches), not the model alone."""
    from playground.flow.tab import show_density, show_layers

    register_models()
    _, _, metrics, seed = show_density("8gaussians", "flow-8gaussians", 500, 3, False)
    assert seed == 3
    assert metrics["test_nll"] == pytest.approx(2.8105, abs=TOL)
    assert metrics["kl"] == pytest.approx(0.0044, abs=TOL)
    assert metrics["target_entropy"] == pytest.approx(2.8061, abs=TOL)
    assert metrics["mass_in_box"] == pytest.approx(0.9997, abs=TOL)
    _, table, _ = show_layers("flow-rings", 5, False)
    assert len(table) == 6
    assert table["layer"].iloc[0] == "6: spline (autoregressive)"
    assert table["mean_log_det"].head(4).tolist() == pytest.approx(
        [0.5053, 0.2641, 0.0361, -0.0401], abs=TOL)
