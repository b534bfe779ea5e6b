"""Live VAE training with a β (KL weight): β reaches the loss, both terms are logged and
plotted, the same seed trains the same run, the result registers for the session."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from playground.core import registry
from playground.core.errors import UserInputError
from playground.core.training import LoopConfig, train_loop
from playground.vae import FAMILY, register_models
from playground.vae.likelihood import quantize
from playground.vae.train import PRESETS, build_task
from tests.conftest import write_tiny_faces

register_models()
TERMS = ("recon_nats", "kl", "beta_kl_nats", "loss_nats", "beta")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def faces(tmp_path, monkeypatch):
    return write_tiny_faces(tmp_path, monkeypatch, people=7, per_person=2)


def _data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 64, 64, generator=gen)
    return quantize((base + 0.2 * torch.rand(16, 1, 64, 64, generator=gen)).clamp(0, 1))


def _train_tiny(beta: float, steps: int, seed: int = 0) -> list[dict]:
    cfg = dataclasses.replace(PRESETS["tiny"], beta=beta, kl_warmup=1)
    loop = LoopConfig(max_steps=steps, log_every=1, progress=False, device="cpu", seed=seed)
    return train_loop(loop, build_task(cfg, loop, _data())).history


def test_beta_zero_leaves_the_kl_unpenalised_the_loss_is_the_reconstruction():
    history = _train_tiny(0.0, 8)
    assert all(set(TERMS) <= set(row) for row in history)
    for row in history:
        assert row["loss_nats"] == row["recon_nats"] and row["beta_kl_nats"] == 0
        assert row["kl"] > 1  # there is a KL; it is just not in the loss
    for row in _train_tiny(2.0, 4):
        assert row["loss_nats"] == pytest.approx(row["recon_nats"] + 2.0 * row["kl"], rel=1e-6)
        assert row["loss_nats"] > row["recon_nats"] + row["kl"]


def test_a_larger_beta_gives_a_smaller_kl_after_the_same_steps():
    free, pulled = _train_tiny(0.1, 60)[-1], _train_tiny(4.0, 60)[-1]
    assert pulled["kl"] < 0.5 * free["kl"], (free, pulled)
    assert pulled["recon_nats"] > free["recon_nats"]  # the other side of the tug-of-war


def test_the_live_run_gets_the_users_beta_and_seed_and_repeats_itself(faces, tmp_path):
    from playground.vae.live import build_run

    def run(seed: int, out: str) -> list[dict]:
        loop, task = build_run(str(tmp_path / out), steps=4, device="cpu", latent_dim=4,
                               faces=str(faces), beta=0.25, seed=seed)
        assert task.summary["vae_config"]["beta"] == 0.25 and loop.seed == seed
        rows = train_loop(loop, task).history
        return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]

    first, again, other = run(3, "a"), run(3, "b"), run(4, "c")
    assert first == again and first != other
    assert [row["step"] for row in first] == [1, 2, 3, 4]  # both terms at every step
    assert all(set(TERMS) <= set(row) for row in first)
    assert first[-1]["beta"] == 0.25 and "val_bits_per_dim" in first[-1]
    assert "val_bits_per_dim" not in first[0]  # held-out ELBO only every 10th log row
    for row in first:
        assert row["loss_nats"] == pytest.approx(row["recon_nats"] + row["beta_kl_nats"],
                                                 rel=1e-6)


def test_the_tab_streams_both_terms_and_the_record_and_registers_the_model(faces):
    from playground.vae.tab import on_train

    updates = list(on_train(4, "cpu", 4, 0.0, 7))
    run_id, elbo, recon, kl, grid, record_file, status, dropdown = updates[-1]
    assert run_id is None and status.startswith("Done") and dropdown["value"] in status
    assert dropdown["value"] in registry.choices(FAMILY) and "β 0" in dropdown["value"]
    assert set(recon["series"]) == {"reconstruction −log p(x|z)"}
    assert set(kl["series"]) == {"KL(q(z|x) ‖ p(z))", "β·KL (its part of the loss)"}
    assert list(recon["step"]) == [1, 2, 3, 4]
    beta_kl = kl[kl["series"] == "β·KL (its part of the loss)"]["value"]
    assert (beta_kl == 0).all() and (kl[kl["series"] == "KL(q(z|x) ‖ p(z))"]["value"] > 0).all()
    saved = json.loads(open(record_file).read())
    record = saved["record"]
    assert record["params"]["beta"] == 0.0 and record["seed"] == 7
    assert record["model"] == dropdown["value"] and record["model_hash"].startswith("sha256:")
    assert [row["recon_nats"] for row in saved["history"]] == list(recon["value"])
    assert all(u[5] is None for u in updates[:-1])  # the record only once the model is saved
    assert grid is not None and set(elbo["series"]) == {"train -ELBO", "held-out -ELBO"}


def test_the_status_line_names_both_terms_beta_and_seed():
    from playground.vae.live import progress_note

    row = {"step": 120, "recon_nats": 9012.34, "kl": 41.234, "beta": 0.4}
    assert progress_note([row], 300, 1.0, 5) == (
        "Training: step 120 / 300 · reconstruction 9012.3 · KL 41.23 nats per face · "
        "β now 0.4 (final 1) · seed 5")
    assert progress_note([], 300, 0.5, 0) == "Training: step 0 / 300 · β 0.5 · seed 0"


@pytest.mark.parametrize("kwargs,message", [
    ({"beta": -0.5}, "β \\(KL weight\\) must be between 0.0 and 10.0"),
    ({"beta": 11}, "β \\(KL weight\\) must be between"),
    ({"beta": "strong"}, "β \\(KL weight\\) must be a number"),
    ({"beta": math.nan}, "β \\(KL weight\\) must be a finite number"),
    ({"seed": -1}, "Seed must be between"),
    ({"seed": 1.5}, "Seed must be a whole number"),
])
def test_bad_beta_or_seed_is_refused_clearly(kwargs, message, faces):
    from playground.vae.live import start_training

    with pytest.raises(UserInputError, match=message):
        start_training(10, "cpu", 8, **kwargs)


def test_api_train_defaults_beta_and_carries_the_terms(client, faces):
    """The three-argument call of before still works (β 1, seed 0 by default)."""
    out = client.predict(4, "cpu", 4, api_name="/vae_train")
    *_, record_file, status, dropdown = out
    assert status.startswith("Done"), status
    saved = json.loads(open(record_file).read())
    assert saved["record"]["params"]["beta"] == 1.0 and saved["record"]["seed"] == 0
    assert all("recon_nats" in row and "kl" in row for row in saved["history"])
