"""Pinned outputs of the shipped 8-Gaussians fits: fixed-seed samples of each family (diffusion
on its fast DDIM path), so a refactor or an upgrade that changes results fails loudly."""

from __future__ import annotations

import pytest
import torch

from playground.compare.inference import load_fit_folder
from playground.compare.sampling import draw
from playground.core.registry import WEIGHTS_DIR

EXPECTED = {  # draw(family, model, 3, seed 0, fast=True).flatten()
    "gan": [3.1548, -0.0784, -1.4518, -1.7722, 0.1069, -2.5302],
    "vae": [-0.6909, 2.9392, 0.9999, -2.8393, -2.2554, -2.3624],
    "flow": [3.1975, -0.3505, -3.2541, 0.6486, -2.1445, -2.2417],
    "diffusion": [2.9907, -0.1437, -3.1619, 0.1767, -2.1206, -2.3031],
    "ar": [2.4698, -2.2184, 0.0046, -2.3841, 2.6896, 0.8989],
}


@pytest.fixture(scope="module")
def models():
    return load_fit_folder(WEIGHTS_DIR / "compare-8gaussians")


@pytest.mark.parametrize("family", list(EXPECTED))
def test_pinned_samples(models, family):
    got = draw(family, models[family], 3, torch.Generator().manual_seed(0), fast=True)
    assert got.flatten().tolist() == pytest.approx(EXPECTED[family], abs=2e-3)
