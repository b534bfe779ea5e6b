"""Flow models: invertibility, log-det bookkeeping, normalisation, HF round trip, training."""

from __future__ import annotations

import math

import pytest
import torch

from playground.core.training import LoopConfig, train_loop
from playground.data.targets2d import TARGETS, Target, sample_8gaussians
from playground.flow.metrics import density_grid, kl_estimate
from playground.flow.model import (
    FLOW_TYPES,
    FlowModel,
    base_log_prob,
    init_actnorm,
    layer_inverse,
    layer_outputs,
)
from playground.flow.train import build_task, learning_rate, resolve_config

torch.set_num_threads(1)


def tiny_flow(flow_type: str, seed: int = 0) -> FlowModel:
    torch.manual_seed(seed)
    model = FlowModel(flow_type, depth=3, width=16)
    init_actnorm(model, sample_8gaussians(256, torch.Generator().manual_seed(seed)))
    with torch.no_grad():  # move away from the near-identity init so the test means something
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return model.eval()


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_inverse_of_forward_is_identity_and_logdets_cancel(flow_type):
    model = tiny_flow(flow_type)
    x = sample_8gaussians(300, torch.Generator().manual_seed(3))
    with torch.no_grad():
        transform = model.flow().transform
        z, ladj = transform.call_and_ladj(x)
        x_back, ladj_inv = transform.inv.call_and_ladj(z)
    assert x.shape == z.shape == x_back.shape == (300, 2) and z.dtype == torch.float32
    assert torch.allclose(x_back, x, atol=1e-4)
    assert torch.allclose(ladj + ladj_inv, torch.zeros(300), atol=1e-4)
    assert ladj.abs().max() > 1e-2  # a non-trivial map, so cancelling is not vacuous


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_layer_by_layer_matches_the_whole_flow(flow_type):
    model = tiny_flow(flow_type)
    x = sample_8gaussians(100, torch.Generator().manual_seed(4))
    with torch.no_grad():
        states, ladjs = layer_outputs(model, x)
        back = layer_inverse(model, states[-1])
        log_q = model.log_prob(x)
    assert len(states) == len(model.layers) + 1 == len(back)
    assert torch.allclose(base_log_prob(states[-1]) + sum(ladjs), log_q, atol=1e-4)
    assert torch.allclose(back[-1], x, atol=1e-4)
    expected = {"realnvp": "affine coupling", "glow": "ActNorm", "nsf": "spline (autoregressive)"}
    assert model.layer_names()[0] == expected[flow_type]


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_density_integrates_to_one_on_a_grid(flow_type):
    model = tiny_flow(flow_type)
    _, mass = density_grid(model, resolution=300, box=12.0)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_actnorm_init_standardises_its_input():
    torch.manual_seed(0)
    model = FlowModel("glow", depth=1, width=8)
    x = sample_8gaussians(2000, torch.Generator().manual_seed(0)) * 3 + 5
    init_actnorm(model, x)
    h = model.layers[0]()(x)
    assert torch.allclose(h.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(h.std(0), torch.ones(2), atol=1e-3)


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_save_pretrained_round_trip(flow_type, tmp_path):
    model = tiny_flow(flow_type)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    loaded = FlowModel.from_pretrained(str(tmp_path)).eval()
    assert loaded.config == model.config
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_sampling_uses_the_given_generator_only():
    model = tiny_flow("nsf")
    with torch.no_grad():
        a = model.sample(64, torch.Generator().manual_seed(5))
        torch.manual_seed(123)  # the global RNG must not matter
        b = model.sample(64, torch.Generator().manual_seed(5))
        c = model.sample(64, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_kl_estimate_known_answer():
    """q = N(0, I) and p = N(0, s²I): KL(p‖q) = s² − 1 − 2 ln s in 2-D."""
    s = 1.5

    class StandardNormal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def log_prob(self, x):
            return base_log_prob(x)

    target = Target("wide", "wide", lambda n, g: s * torch.randn(n, 2, generator=g),
                    lambda x: base_log_prob(x / s) - 2 * math.log(s))
    out = kl_estimate(StandardNormal(), target, n=50_000)
    exact = s**2 - 1 - 2 * math.log(s)
    assert out["kl"] == pytest.approx(exact, abs=4 * out["kl_se"] + 1e-3)
    assert 0 < out["kl_se"] < 0.02


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "rings"])
def test_analytic_targets_are_normalised(name):
    target = TARGETS[name]
    step = 8.4 / 600
    coords = -4.2 + step * (torch.arange(600) + 0.5)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    pts = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).double()
    assert float(target.log_prob(pts).exp().sum() * step * step) == pytest.approx(1.0, abs=0.01)
    samples = target.sample(2000, torch.Generator().manual_seed(0))
    assert torch.isfinite(target.log_prob(samples)).all()  # samples lie in the support


def _old_lr_at(step: int, total: int, cfg) -> float:
    """The flow's own schedule before it moved to playground.core.schedules (kept to compare)."""
    if step <= cfg.warmup:
        return cfg.lr * step / max(1, cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    floor = cfg.final_lr_frac
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_learning_rate_schedule():
    cfg = resolve_config("ship")
    assert learning_rate(0, 1000, cfg) == 0.0
    assert learning_rate(1, 1000, cfg) < cfg.lr / 10
    assert learning_rate(cfg.warmup, 1000, cfg) == pytest.approx(cfg.lr)
    assert learning_rate(1000, 1000, cfg) == pytest.approx(cfg.lr * cfg.final_lr_frac)


@pytest.mark.parametrize("preset", ["tiny", "live", "ship", "ship-cuda"])
def test_learning_rate_matches_the_old_schedule(preset):
    cfg = resolve_config(preset)
    for total in (cfg.steps, 2 * cfg.steps + 7):
        for step in sorted({0, 1, cfg.warmup - 1, cfg.warmup, cfg.warmup + 1, total // 2,
                            total - 1, total, total + 5}):
            assert learning_rate(step, total, cfg) == pytest.approx(
                _old_lr_at(step, total, cfg), rel=1e-12, abs=1e-15), (preset, total, step)
    no_warmup = resolve_config(preset, {"warmup": 0})
    for step in (0, 1, 10):
        assert learning_rate(step, 100, no_warmup) == pytest.approx(
            _old_lr_at(step, 100, no_warmup), rel=1e-12, abs=1e-15)


def _train(seed: int, steps: int = 30, flow_type: str = "nsf"):
    cfg = resolve_config("tiny", {"flow_type": flow_type, "steps": steps})
    loop = LoopConfig(max_steps=steps, log_every=steps // 3, seed=seed, progress=False,
                      device="cpu")
    task = build_task(cfg, loop)
    result = train_loop(loop, task)
    return task.models["flow"], result


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_training_lowers_the_loss_and_every_parameter_gets_a_gradient(flow_type):
    model, result = _train(0, steps=60, flow_type=flow_type)
    first, last = result.history[0], result.history[-1]
    assert last["test_nll"] < first["test_nll"] - 0.05
    assert last["kl"] < first["kl"]
    x = sample_8gaussians(64, torch.Generator().manual_seed(0))
    model.zero_grad()
    (-model.log_prob(x).mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_same_seed_gives_the_same_trained_flow():
    a, _ = _train(seed=7)
    b, _ = _train(seed=7)
    c, _ = _train(seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
