"""Live (in-browser) VAE training: a run registers a selectable model; bad input; cancel."""

from __future__ import annotations

import pytest
import torch

from playground.core import live, registry
from playground.core.errors import UserInputError
from playground.vae import FAMILY, register_models
from playground.vae.inference import sample_faces
from tests.conftest import write_tiny_faces

register_models()


@pytest.fixture
def faces(tmp_path, monkeypatch):
    write_tiny_faces(tmp_path, monkeypatch, people=7, per_person=2)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(n)


def test_live_training_registers_a_selectable_model(faces):
    from playground.vae.live import start_training

    run = start_training(3, "cpu", 8)
    assert run.done.wait(120) and run.error is None, run.error
    assert run.result in registry.choices(FAMILY) and run.history
    assert "val_bits_per_dim" in run.history[-1]
    assert run.samples and run.samples[-1][1].shape == (16, 1, 64, 64)
    assert len(sample_faces(run.result, seed=0, n=2).images) == 2


def test_live_training_bad_input_and_cancel(faces):
    from playground.vae.live import start_training

    with pytest.raises(UserInputError, match="Steps"):
        start_training(0)
    with pytest.raises(UserInputError, match="Latent size"):
        start_training(10, "cpu", 1)
    with pytest.raises(UserInputError, match="Device"):
        start_training(10, "tpu")
    run = start_training(5000, "cpu", 4)
    assert live.cancel_run(run.run_id)
    assert run.done.wait(60) and run.result is None


def test_live_training_reads_the_bundled_faces(monkeypatch):
    from playground.vae.live import start_training

    monkeypatch.delenv("PLAYGROUND_FACES", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = start_training(2, "cpu", 4)
        assert run.done.wait(120) and run.error is None, run.error
    finally:
        torch.set_num_threads(n)
    assert run.result in registry.choices(FAMILY)
    assert "val_bits_per_dim" in run.history[-1]  # the 50 held-out photos were evaluated


def test_tab_handler_streams_the_run_and_selects_the_new_model(faces):
    from playground.vae.tab import on_train

    updates = list(on_train(4, "cpu", 4))
    run_id, curve, _recon, _kl, grid, _record, status, dropdown = updates[-1]
    assert run_id is None and "is now in the model list" in status
    assert dropdown["value"] in registry.choices(FAMILY) and dropdown["value"] in status
    assert set(curve["series"]) == {"train -ELBO", "held-out -ELBO"}
    assert grid is not None and grid.size == (8 * 66 - 2, 2 * 66 - 2)  # 16 codes, 8 a row
    assert all(u[0] is not None for u in updates[:-1])  # the run id while it trains


def test_a_queued_run_says_what_it_waits_for_and_stop_saves_nothing(faces, monkeypatch):
    """Another run holds the only training slot: the status line is the queue note."""
    from playground.ui import stop_live_run
    from playground.vae.tab import on_train

    slots = live._Slots(1)
    slots.busy = 1  # someone else's run is training
    monkeypatch.setattr(live, "SLOTS", slots)
    before = set(registry.choices(FAMILY))
    stream = on_train(5, "cpu", 4)
    for _ in range(20):
        run_id, *_, status, _dropdown = next(stream)
        if status.startswith("Queued"):
            break
    assert "1 training run(s) ahead of yours" in status and run_id
    assert stop_live_run(run_id) == "Stopped: nothing was saved."
    *_, last = list(stream)
    assert last[6] == "Stopped: nothing was saved." and last[0] is None
    assert set(registry.choices(FAMILY)) == before
