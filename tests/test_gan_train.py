"""The GAN trainer's options behind the shipped recipe: the plain D, the lazy R1 penalty, the
EMA half-life ramp-up; tiny configs on CPU."""

from __future__ import annotations

import dataclasses
import json
import math

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
    identity_loss,
    r1_penalty,
    resolve_config,
)


def test_plain_discriminator_has_no_batch_norm_and_old_configs_keep_it(tmp_path):
    plain = Discriminator(ndf=8, image_size=32, spectral_norm=False, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    # each image's logit depends on that image only (what R1 assumes)
    x = torch.randn(4, 1, 32, 32)
    assert torch.allclose(plain(x)[:2], plain(x[:2]), atol=1e-6)
    # a D saved before the option existed (no "batch_norm" in its config) keeps batch norm
    old = Discriminator(ndf=8, image_size=32, spectral_norm=False)
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("batch_norm", None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = Discriminator.from_pretrained(str(tmp_path))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    assert torch.equal(loaded.main[0].weight, old.main[0].weight)


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
    ({"identity_weight": -0.5}, "identity_weight must be between 0"),
    ({"ema_rampup": -0.05}, "ema_rampup must be between 0 and 1"),
    ({"upsample": "bilinear"}, "upsample must be one of"),
])
def test_research_options_refuse_bad_values(overrides, message):
    with pytest.raises(UserInputError, match=message):
        resolve_config("olivetti", overrides)


@pytest.mark.parametrize("d_batch_norm", [True, False])
def test_tiny_training_with_r1_reaches_every_parameter(tmp_path, d_batch_norm):
    cfg = dataclasses.replace(PRESETS["tiny"], d_batch_norm=d_batch_norm, r1_gamma=1.0,
                              r1_every=2, ema_rampup=0.05)
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
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in saved.modules())
    assert has_bn == d_batch_norm


def test_identity_loss_known_values():
    k = 5
    assert identity_loss(torch.zeros(4, k)).item() == pytest.approx(0.0, abs=1e-6)  # all unsure
    distinct = torch.eye(k) * 50  # each face one clear, different person
    assert identity_loss(distinct).item() == pytest.approx(-math.log(k), abs=1e-4)
    same = torch.zeros(k, k)
    same[:, 0] = 50  # every face the same clear person: no reward
    assert identity_loss(same).item() == pytest.approx(0.0, abs=1e-4)


def test_tiny_training_with_the_identity_head(tmp_path):
    cfg = dataclasses.replace(PRESETS["tiny"], identity_weight=0.5)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    labels = torch.arange(4).repeat_interleave(4)
    loop = LoopConfig(max_steps=4, log_every=2, out_dir=str(tmp_path / "out"), progress=False,
                      device="cpu")
    task = build_task(cfg, loop, data, labels=labels)
    result = train_loop(loop, task)
    assert {"id_acc", "id_g"} <= set(result.last) and task.summary["identity_term"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in task.models["d"].classes.parameters())
    assert all(p.grad is not None for p in task.models["g"].parameters())
    saved = Discriminator.from_pretrained(str(tmp_path / "out" / "discriminator"))
    assert saved.n_classes == 4 and saved(data[:2], classes=True)[1].shape == (2, 4)
    # without labels (the in-browser trainer) the same preset trains with the term off
    plain = build_task(cfg, loop, data)
    assert plain.models["d"].classes is None and not plain.summary["identity_term"]


def test_rejection_probe_refuses_keeping_more_faces_than_it_draws(capsys):
    from research.gan import rejection

    with pytest.raises(SystemExit):
        rejection.main(["ckpt", "generator", "--n", "10", "--keep", "20"])
    assert "--keep must be between 1 and --n (10), got 20" in capsys.readouterr().err
