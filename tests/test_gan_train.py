"""The GAN trainer's options behind the shipped recipe: the lazy R1 penalty, the EMA half-life
ramp-up; tiny configs on CPU. (The switches that did not ship: test_research_gan_switches.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from playground.core.errors import UserInputError
from playground.core.training import LoopConfig, train_loop
from playground.gan.model import Discriminator
from playground.gan.train import (
    PRESETS,
    GANConfig,
    build_task,
    ema_decay_at,
    r1_penalty,
    resolve_config,
)


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    w = torch.randn(1, 1, 8, 8)
    d = torch.nn.Conv2d(1, 1, 8, bias=True)  # D(x) = <w, x> + b: gradient w everywhere
    with torch.no_grad():
        d.weight.copy_(w)
    penalty = r1_penalty(lambda x: d(x).flatten(), torch.randn(5, 1, 8, 8), lambda x: x)
    assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-5)
    penalty.backward()  # differentiable in D's weights: d|w|^2/dw = 2w
    assert torch.allclose(d.weight.grad, 2 * w, atol=1e-5)


def test_ema_rampup_caps_the_half_life():
    cfg = GANConfig(ema_decay=0.999, ema_start=0, ema_rampup=0.05)
    for step in (100, 1000):  # half-life = 0.05 * step: 5 and 50 steps
        assert ema_decay_at(cfg, step) ** (0.05 * step) == pytest.approx(0.5)
    assert ema_decay_at(cfg, 100_000) == 0.999  # the cap: half-life 693 steps
    assert ema_decay_at(GANConfig(ema_start=200), 150) == 0.0  # copies G before the start
    assert ema_decay_at(GANConfig(ema_start=200), 250) == 0.999


def test_r1_settings_are_checked():
    with pytest.raises(UserInputError, match="r1_every"):
        resolve_config("olivetti", {"r1_every": 0})
    with pytest.raises(UserInputError, match="r1_gamma"):
        resolve_config("olivetti", {"r1_gamma": -1.0})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"r1_every": 2.5}, "r1_every must be a whole number"),
    ({"ema_rampup": -0.05}, "ema_rampup must be between 0 and 1"),
])
def test_recipe_options_refuse_bad_values(overrides, message):
    with pytest.raises(UserInputError, match=message):
        resolve_config("olivetti", overrides)


def test_tiny_training_with_r1_reaches_every_parameter(tmp_path):
    cfg = dataclasses.replace(PRESETS["tiny"], r1_gamma=1.0, r1_every=2, ema_rampup=0.05)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    loop = LoopConfig(max_steps=4, log_every=2, out_dir=str(tmp_path / "out"), progress=False,
                      device="cpu")
    task = build_task(cfg, loop, data)
    d = task.models["d"]
    before = {k: v.clone() for k, v in d.state_dict().items()}
    result = train_loop(loop, task)
    assert "r1" in result.last and result.last["r1"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.models["g"].parameters())
    assert all(not torch.equal(v, before[k]) for k, v in d.state_dict().items()
               if "num_batches" not in k)
    saved = Discriminator.from_pretrained(str(tmp_path / "out" / "discriminator"))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in saved.modules())


def test_rejection_probe_refuses_keeping_more_faces_than_it_draws(capsys):
    from research.gan import rejection

    with pytest.raises(SystemExit):
        rejection.main(["ckpt", "generator", "--n", "10", "--keep", "20"])
    assert "--keep must be between 1 and --n (10), got 20" in capsys.readouterr().err
