"""The flow trainer from the command line (single process and DDP), and the shipped weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from playground.core.errors import UserInputError
from playground.core.registry import REPO_ROOT, WEIGHTS_DIR
from playground.data.targets2d import TARGETS
from playground.flow import SHIPPED_TARGETS, shipped_name
from playground.flow.metrics import kl_estimate, nll
from playground.flow.model import FlowModel
from playground.flow.train import PRESETS, resolve_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PLAYGROUND_DEVICE": "cpu"}


def _summary(out: Path) -> dict:
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    return json.loads((out / "training_summary.json").read_text())


@pytest.mark.parametrize("preset,overrides,message", [
    ("nope", {}, "Unknown preset 'nope'"), ("tiny", {"depht": 3}, "Unknown flow setting"),
    ("tiny", {"flow_type": "maf"}, "Unknown flow type 'maf'"),
])
def test_resolve_config_refuses_bad_settings(preset, overrides, message):
    with pytest.raises(UserInputError, match=message):
        resolve_config(preset, overrides)


def test_resolve_config_applies_overrides_to_a_fresh_copy():
    cfg = resolve_config("ship", {"target": "rings", "steps": 7})
    assert (cfg.target, cfg.steps, cfg.depth) == ("rings", 7, PRESETS["ship"].depth)
    assert PRESETS["ship"].steps == 4000 and PRESETS["ship"].target == "8gaussians"


def test_cli_tiny_preset(tmp_path):
    out = tmp_path / "flow-tiny"
    proc = subprocess.run([sys.executable, "-m", "playground.train", "flow", "--preset", "tiny",
                           "--max-steps", "20", "--out", str(out)], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = _summary(out)
    assert summary["steps"] == 20 and summary["flow_config"]["depth"] == 2
    model = FlowModel.from_pretrained(str(out))
    assert model.config["flow_type"] == "nsf"


def test_accelerate_launch_two_cpu_processes(tmp_path):
    out = tmp_path / "flow-ddp"
    launcher = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run([str(launcher), "launch", "--cpu", "--num_processes", "2", "-m",
                           "playground.train", "flow", "--preset", "tiny", "--max-steps", "10",
                           "--out", str(out)], cwd=REPO_ROOT, env=ENV, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = _summary(out)
    assert summary["num_processes"] == 2 and summary["steps"] == 10


KL_LIMIT = 0.02


@pytest.mark.parametrize("target", ["8gaussians", "checkerboard"])
def test_shipped_flow_kl_recomputed(target):
    """The card's KL (100k samples) recomputed on 20k fresh samples, within the 0.02 goal."""
    folder = WEIGHTS_DIR / shipped_name(target)
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder.name} is not trained yet")
    model = FlowModel.from_pretrained(str(folder)).eval()
    card = json.loads((folder / "metrics.json").read_text())
    out = kl_estimate(model, TARGETS[target], n=20_000, seed=99)
    assert out["kl"] == pytest.approx(card["kl"], abs=max(0.01, 5 * out["kl_se"]))
    assert out["kl"] <= KL_LIMIT + 3 * out["kl_se"]
    assert card["kl"] <= KL_LIMIT
    assert f"{card['kl']:.4f}" in (folder / "README.md").read_text()


@pytest.mark.parametrize("target", SHIPPED_TARGETS)
def test_shipped_flow_nll_matches_its_card(target):
    folder = WEIGHTS_DIR / shipped_name(target)
    if not (folder / "metrics.json").is_file():
        pytest.skip(f"{folder.name} is not trained yet")
    model = FlowModel.from_pretrained(str(folder)).eval()
    card = json.loads((folder / "metrics.json").read_text())
    x = TARGETS[target].sample(10_000, torch.Generator().manual_seed(5))
    value, se = nll(model, x)
    assert value == pytest.approx(card["nll"], abs=5 * se + 0.01)
    assert model.config["target"] == target
