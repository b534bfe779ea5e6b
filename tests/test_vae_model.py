"""VAE model and loss: shapes, reparameterisation gradient, KL and likelihood with known answers,
determinism, save/load, a few training steps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from playground.core.training import LoopConfig, train_loop
from playground.vae.likelihood import (
    bits_per_dim,
    discretized_logistic_log_prob,
    elbo_terms,
    evaluate_elbo,
    gaussian_kl,
    quantize,
)
from playground.vae.model import ConvVAE, reparameterize
from playground.vae.train import PRESETS, augment, build_task


def tiny_vae() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(latent_dim=4, base_width=4, max_width=8)


def test_shapes_and_dtypes():
    model = tiny_vae()
    x = torch.rand(3, 1, 64, 64)
    out = model(x, torch.Generator().manual_seed(0))
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (3, 4)
    assert out["mean"].shape == out["log_scale"].shape == (3, 1, 64, 64)
    assert all(v.dtype == torch.float32 for v in out.values())
    assert 0 <= out["mean"].min() and out["mean"].max() <= 1
    assert model.decode(torch.zeros(2, 4)).shape == (2, 1, 64, 64)


def test_reparameterisation_gradient_matches_analytic():
    mu = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0), -2.0]], requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(3))
    (z * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    # dz/dmu = 1, dz/dlogvar = 0.5 * exp(logvar / 2) * eps
    assert torch.allclose(mu.grad, torch.tensor([[1.0, 2.0, 3.0]]))
    expected = torch.tensor([1.0, 2.0, 3.0]) * 0.5 * torch.exp(logvar.detach() / 2) * eps
    assert torch.allclose(logvar.grad, expected, atol=1e-6)


def test_kl_matches_closed_form_and_torch_distributions():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * (1 + 0 + 0) + 0.5 * (0 + 4 - 1 - ln 4)
    expected = 0.5 + 0.5 * (3 - math.log(4))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected, abs=1e-6)
    q = torch.distributions.Normal(mu, torch.exp(logvar / 2))
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    reference = torch.distributions.kl_divergence(q, p).sum().item()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(reference, abs=1e-6)
    # and a Monte-Carlo estimate E_q[log q - log p] agrees
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean().item()
    assert mc == pytest.approx(expected, abs=0.02)


def test_discretized_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256.0) / 255  # every grey level
    for mean, log_scale in [(0.3, -3.0), (0.0, -6.0), (1.0, -1.0), (0.5, 2.0)]:
        logp = discretized_logistic_log_prob(levels, torch.tensor(mean), torch.tensor(log_scale))
        assert torch.logsumexp(logp, 0).exp().item() == pytest.approx(1.0, abs=1e-4)
    # a sharp logistic on each pixel's own level codes it in ~0 bits; one level off: many bits
    x = quantize(torch.rand(1, 1, 8, 8))
    sharp = torch.full_like(x, -9.0)
    nll = -discretized_logistic_log_prob(x, x, sharp)
    assert bits_per_dim(nll.sum().item(), 64) == pytest.approx(0.0, abs=1e-3)
    off = -discretized_logistic_log_prob(x, (x + 1 / 255).clamp(max=0.5), sharp)
    assert bits_per_dim(off.sum().item(), 64) > 5


def test_elbo_terms_and_evaluation_are_deterministic():
    model = tiny_vae().eval()
    x = quantize(torch.rand(5, 1, 64, 64))
    a = evaluate_elbo(model, x, samples=2, seed=7)
    b = evaluate_elbo(model, x, samples=2, seed=7)
    assert a == b
    assert a["bits_per_dim"] == pytest.approx(a["nll_bits_per_dim"] + bits_per_dim(
        a["kl_nats"], 64 * 64), abs=1e-6)
    out = model(x, torch.Generator().manual_seed(1))
    again = model(x, torch.Generator().manual_seed(1))
    assert torch.equal(out["mean"], again["mean"])
    terms = elbo_terms(x, out)
    assert terms["nll"].shape == terms["kl"].shape == (5,) and (terms["kl"] >= 0).all()


def test_save_load_round_trip(tmp_path):
    model = tiny_vae().eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    loaded = ConvVAE.from_pretrained(str(tmp_path)).eval()
    assert loaded.latent_dim == 4
    z = torch.randn(2, 4)
    assert torch.equal(model.decode(z), loaded.decode(z))
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])


def test_augment_mirrors_and_shifts_on_the_grid():
    x = quantize(torch.rand(6, 1, 64, 64))
    out = augment(x, torch.Generator().manual_seed(0), 2)
    assert out.shape == x.shape
    assert torch.equal(quantize(out), out)  # still 8-bit levels
    assert augment(x, torch.Generator().manual_seed(0), 0).shape == x.shape


def test_training_lowers_the_loss_and_reaches_every_parameter(one_thread):
    cfg = PRESETS["tiny"]
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 64, 64, generator=gen)
    data = quantize((base + 0.1 * torch.rand(16, 1, 64, 64, generator=gen)).clamp(0, 1))
    loop = LoopConfig(max_steps=30, log_every=10, progress=False, device="cpu")
    task = build_task(cfg, loop, data[:12], data[12:])
    model = task.models["vae"]
    x = data[:8]
    loss = sum(elbo_terms(x, model(x, torch.Generator().manual_seed(0))).values()).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    model.zero_grad(set_to_none=True)
    result = train_loop(loop, task)
    first, last = result.history[0], result.history[-1]
    assert last["train_elbo_bpd"] < first["train_elbo_bpd"] - 0.05
    assert "val_bits_per_dim" in last and math.isfinite(last["val_bits_per_dim"])


@pytest.mark.parametrize("preset,overrides,message", [
    ("nope", {}, "Unknown preset 'nope'"),
    ("tiny", {"depth": 3}, r"Unknown VAE setting\(s\) \['depth'\]"),
    ("tiny", {"latent_dim": 0}, "latent_dim must be between 1"),
    ("tiny", {"lr": -1e-3}, "lr must be between"),
    ("tiny", {"beta": "big"}, "beta must be a number"),
    ("tiny", {"steps": 2.5}, "steps must be a whole number"),
    ("tiny", {"max_shift": 99}, "max_shift must be between 0 and 16"),
    ("tiny", {"per_image_scale": "yes"}, "per_image_scale must be true or false"),
])
def test_resolve_config_refuses_unknown_names_and_bad_values(preset, overrides, message):
    from playground.core.errors import UserInputError
    from playground.vae.train import resolve_config

    with pytest.raises(UserInputError, match=message):
        resolve_config(preset, overrides)


def test_resolve_config_applies_overrides_to_every_preset():
    from playground.vae.train import resolve_config

    for name, cfg in PRESETS.items():
        assert resolve_config(name) == cfg
    cfg = resolve_config("tiny", {"latent_dim": 6, "lr": 1})
    assert (cfg.latent_dim, cfg.lr, cfg.base_width) == (6, 1, PRESETS["tiny"].base_width)


def test_export_checkpoint_writes_the_checkpointed_vae(tmp_path, one_thread):
    from playground.vae.card import export_checkpoint

    data = quantize(torch.rand(10, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    loop = LoopConfig(max_steps=4, log_every=2, progress=False, device="cpu",
                      out_dir=str(tmp_path / "run"), checkpoint_every=2)
    task = build_task(PRESETS["tiny"], loop, data[:8], data[8:])
    train_loop(loop, task)
    out = tmp_path / "export"
    assert export_checkpoint(tmp_path / "run-ckpt", "tiny", out) == 4
    exported = ConvVAE.from_pretrained(str(out)).eval()
    final = ConvVAE.from_pretrained(str(tmp_path / "run")).eval()
    z = torch.randn(2, 4)
    assert torch.equal(exported.decode(z), final.decode(z))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 4 and summary["preset"] == "tiny"
    assert summary["vae_config"]["latent_dim"] == 4
