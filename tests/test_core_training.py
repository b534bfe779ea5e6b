"""The shared accelerate loop: metrics, samples, cancel, checkpoint/resume, atomic save, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests import toy_task

ROOT = Path(__file__).resolve().parents[1]


def test_loop_trains_logs_and_saves(tmp_path):
    out = tmp_path / "model"
    result = toy_task.run(str(out), 60)
    assert result.steps == 60 and not result.cancelled
    assert result.history[0]["loss"] > 10 * result.history[-1]["loss"]
    assert [s for s, _ in result.samples] == [10, 20, 30, 40, 50, 60]
    weight = toy_task.load_weight(out)
    assert torch.allclose(weight, toy_task.TRUE_W.T, atol=0.05)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 60 and summary["device"] == "cpu"
    metrics = (tmp_path / "model-ckpt" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,") and len(metrics) == 1 + 12


def test_sample_at_start_shows_the_untrained_model_and_changes_nothing_else(tmp_path):
    plain = toy_task.run(str(tmp_path / "a"), 30)
    started = toy_task.run(str(tmp_path / "b"), 30, cancel_at=20, sample_at_start=True)
    torch.manual_seed(0)
    untrained = torch.nn.Linear(2, 1).weight.detach()
    assert [s for s, _ in started.samples] == [0, 10, 20]
    assert torch.equal(started.samples[0][1], untrained)
    assert torch.equal(started.samples[1][1], plain.samples[0][1])  # same training
    resumed = toy_task.run(str(tmp_path / "b"), 30, resume=True, sample_at_start=True)
    assert [s for s, _ in resumed.samples] == [30]  # no step-0 picture when resuming


def test_cancel_leaves_no_artefact_and_resume_continues(tmp_path):
    out = tmp_path / "model"
    cancelled = toy_task.run(str(out), 100, cancel_at=33)
    assert cancelled.cancelled and cancelled.steps == 33
    assert not out.exists()  # nothing half-written
    assert json.loads((tmp_path / "model-ckpt" / "progress.json").read_text())["step"] == 33
    resumed = toy_task.run(str(out), 50, resume=True)
    assert resumed.steps == 50 and resumed.history[-1]["step"] == 50
    assert [row["step"] for row in resumed.history][:6] == [5, 10, 15, 20, 25, 30]
    assert out.exists()


def test_resume_matches_uninterrupted_run(tmp_path):
    """Stopped at step 20 and resumed, the run draws the batches and the step generator's
    noise an uninterrupted run draws: the same weights and the same logged losses."""
    straight = toy_task.run(str(tmp_path / "a"), 40, noise=0.1)
    toy_task.run(str(tmp_path / "b"), 40, cancel_at=20, noise=0.1)
    resumed = toy_task.run(str(tmp_path / "b"), 40, resume=True, noise=0.1)
    assert resumed.last["loss"] < 0.1 * straight.history[0]["loss"]
    assert torch.equal(toy_task.load_weight(tmp_path / "b"), toy_task.load_weight(tmp_path / "a"))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


def test_resume_from_a_checkpoint_without_the_generator_state_still_runs(tmp_path):
    """Checkpoints written before the step generator's state was kept: the run resumes, its
    generator restarted."""
    toy_task.run(str(tmp_path / "b"), 40, cancel_at=20, noise=0.1)
    for old in (tmp_path / "b-ckpt" / "state").glob("step_generator_*.safetensors"):
        old.unlink()
    resumed = toy_task.run(str(tmp_path / "b"), 40, resume=True, noise=0.1)
    assert resumed.steps == 40 and resumed.history[-1]["step"] == 40


def test_two_process_ddp_with_accelerate_launch(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2",
                           "-m", "tests.toy_task", str(tmp_path / "ddp"), "30"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):  # both ranks ran all steps
        assert (tmp_path / f"ddp.rank{rank}").read_text().split()[0] == "30"
    summary = json.loads((tmp_path / "ddp" / "training_summary.json").read_text())
    assert summary["num_processes"] == 2


def test_snapshots_keep_the_model_every_n_steps_and_average_back(tmp_path):
    """``snapshot_every`` keeps a model folder every N steps; averaging two of them gives the
    mean of their weights (and the last one's other files)."""
    from playground.core.averaging import average_folders
    from playground.core.training import LoopConfig, train_loop

    out = tmp_path / "model"
    cfg = LoopConfig(max_steps=30, out_dir=str(out), log_every=5, snapshot_every=10,
                     checkpoint_every=0, progress=False)
    train_loop(cfg, toy_task.make_task())
    snaps = sorted((tmp_path / "model-snapshots").iterdir())
    assert [p.name for p in snaps] == ["step000010", "step000020", "step000030"]
    assert torch.equal(toy_task.load_weight(snaps[-1]), toy_task.load_weight(out))
    (snaps[-1] / "note.json").write_text("{}")
    avg = average_folders(snaps[1:], tmp_path / "avg")
    expected = (toy_task.load_weight(snaps[1]).double()
                + toy_task.load_weight(snaps[2]).double()) / 2
    assert torch.allclose(toy_task.load_weight(avg).double(), expected, atol=1e-7)
    assert (avg / "note.json").exists()
    assert json.loads((avg / "averaged_from.json").read_text()) == [str(p) for p in snaps[1:]]


def test_averaging_refuses_folders_that_do_not_match(tmp_path):
    import pytest
    from safetensors.torch import save_file

    from playground.core.averaging import average_folders
    from playground.core.errors import UserInputError

    for name, shape in (("a", (2, 2)), ("b", (3, 2))):
        (tmp_path / name).mkdir()
        save_file({"w": torch.zeros(shape), "n": torch.tensor([7])},
                  str(tmp_path / name / "model.safetensors"))
    with pytest.raises(UserInputError, match="different shapes"):
        average_folders([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    (tmp_path / "c").mkdir()
    with pytest.raises(UserInputError, match="same weight files"):
        average_folders([tmp_path / "a", tmp_path / "c"], tmp_path / "out")


def test_a_negative_interval_is_refused_with_its_name(tmp_path):
    import pytest

    from playground.core.errors import UserInputError
    from playground.core.training import LoopConfig, train_loop

    cfg = LoopConfig(max_steps=5, out_dir=str(tmp_path / "m"), snapshot_every=-1, progress=False)
    with pytest.raises(UserInputError, match="snapshot every must be 0 or more steps, got -1"):
        train_loop(cfg, toy_task.make_task())
    assert not (tmp_path / "m-snapshots").exists() and not (tmp_path / "m").exists()
    cfg = LoopConfig(max_steps=5, out_dir=str(tmp_path / "m"), log_every=0, progress=False)
    with pytest.raises(UserInputError, match="log every must be 1 or more steps, got 0"):
        train_loop(cfg, toy_task.make_task())
