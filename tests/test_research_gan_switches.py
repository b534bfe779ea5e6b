"""The GAN switches that did not ship (research/gan/): the plain D, D's identity head, the
resize-convolution G. Research imports the product; these tests keep it working as the
product changes, and check that the research models at their defaults are the product's."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from playground.core.errors import UserInputError
from playground.core.training import LoopConfig, train_loop
from playground.gan import train as T
from playground.gan.model import Discriminator, Generator
from research.gan import train as R
from research.gan.model import (
    ResearchDiscriminator,
    ResearchGenerator,
    generator_from_state_dict,
    identity_loss,
)


def _loop(tmp_path, steps: int = 4) -> LoopConfig:
    return LoopConfig(max_steps=steps, log_every=2, out_dir=str(tmp_path / "out"),
                      progress=False, device="cpu")


def _tiny(**switches) -> R.ResearchConfig:
    return dataclasses.replace(R.PRESETS["tiny"], **switches)


def test_research_models_at_their_defaults_are_the_product_models(tmp_path):
    for spectral_norm in (False, True):
        torch.manual_seed(0)
        g, d = T.build_models(dataclasses.replace(T.PRESETS["tiny"], spectral_norm=spectral_norm))
        torch.manual_seed(0)
        rg, rd = R.build_models(_tiny(spectral_norm=spectral_norm))
        for ours, theirs in ((g, rg), (d, rd)):
            assert ours.state_dict().keys() == theirs.state_dict().keys()
            assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    # a research folder (extra config keys) loads into the product classes
    rg.save_pretrained(tmp_path / "g")
    rd.save_pretrained(tmp_path / "d")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["upsample"] == "transposed"
    for cls, model, folder in ((Generator, rg, "g"), (Discriminator, rd, "d")):
        loaded = cls.from_pretrained(str(tmp_path / folder)).state_dict()
        assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())


def test_research_trainer_at_the_defaults_trains_as_the_product(tmp_path):
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    labels = torch.arange(4).repeat_interleave(4)  # unused: identity_weight is 0
    cfg = dataclasses.replace(T.PRESETS["tiny"], r1_gamma=1.0, r1_every=2)
    product = T.build_task(cfg, _loop(tmp_path / "p"), data)
    research = R.build_task(_tiny(r1_gamma=1.0, r1_every=2), _loop(tmp_path / "r"), data,
                            labels=labels)
    train_loop(_loop(tmp_path / "p"), product)
    train_loop(_loop(tmp_path / "r"), research)
    assert not research.summary["identity_term"]
    for name in ("g", "d", "g_ema"):
        ours, theirs = product.models[name].state_dict(), research.models[name].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in ours.items())


@pytest.mark.parametrize(("overrides", "message"), [
    ({"identity_weight": -0.5}, "identity_weight must be between 0"),
    ({"upsample": "bilinear"}, "upsample must be one of"),
    ({"r1_every": 0}, "r1_every"),  # the product's checks hold here too
])
def test_research_switches_refuse_bad_values(overrides, message):
    with pytest.raises(UserInputError, match=message):
        R.resolve_config("olivetti", overrides)


@pytest.mark.parametrize("switch", [{"identity_weight": 0.5}, {"d_batch_norm": False},
                                    {"upsample": "resize"}])
def test_the_product_trainer_does_not_take_the_research_switches(switch):
    with pytest.raises(UserInputError, match="Unknown GAN setting"):
        T.resolve_config("olivetti", switch)
    assert R.resolve_config("olivetti", switch)  # research/gan/LOG.md's (e), (b), (f)


def test_plain_discriminator_has_no_batch_norm_and_old_configs_keep_it(tmp_path):
    plain = ResearchDiscriminator(ndf=8, image_size=32, spectral_norm=False, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    # each image's logit depends on that image only (what R1 assumes)
    x = torch.randn(4, 1, 32, 32)
    assert torch.allclose(plain(x)[:2], plain(x[:2]), atol=1e-6)
    # a D saved before the option existed (no "batch_norm" in its config) keeps batch norm
    old = ResearchDiscriminator(ndf=8, image_size=32, spectral_norm=False)
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("batch_norm", None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = ResearchDiscriminator.from_pretrained(str(tmp_path))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    assert torch.equal(loaded.main[0].weight, old.main[0].weight)


def test_tiny_training_with_r1_and_the_plain_d_reaches_every_parameter(tmp_path):
    cfg = _tiny(d_batch_norm=False, r1_gamma=1.0, r1_every=2, ema_rampup=0.05)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    task = R.build_task(cfg, _loop(tmp_path), data)
    d = task.models["d"]
    before = {k: v.clone() for k, v in d.state_dict().items()}
    result = train_loop(_loop(tmp_path), task)
    assert "r1" in result.last and result.last["r1"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.models["g"].parameters())
    assert all(not torch.equal(v, before[k]) for k, v in d.state_dict().items())
    saved = ResearchDiscriminator.from_pretrained(str(tmp_path / "out" / "discriminator"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in saved.modules())


def test_labelled_batches_are_the_product_batches_with_their_labels():
    cfg = _tiny(batch_size=6)
    levels = torch.linspace(-0.9, 0.9, 16)
    data = levels[:, None, None, None].expand(16, 1, 32, 32).clone()  # face i: one grey level
    labels = torch.arange(16) // 4
    product, research = T.real_batches(data, cfg, 3), R.labelled_batches(data, labels, cfg, 3)
    for _ in range(6):  # past an epoch
        images, people = next(research)
        assert torch.equal(images, next(product))
        # each image is a shifted/mirrored copy of a face of its label's person
        face = (images.flatten(1).median(1).values[:, None] - levels).abs().argmin(1)
        assert torch.equal(labels[face], people)


def test_identity_loss_known_values():
    k = 5
    assert identity_loss(torch.zeros(4, k)).item() == pytest.approx(0.0, abs=1e-6)  # all unsure
    distinct = torch.eye(k) * 50  # each face one clear, different person
    assert identity_loss(distinct).item() == pytest.approx(-math.log(k), abs=1e-4)
    same = torch.zeros(k, k)
    same[:, 0] = 50  # every face the same clear person: no reward
    assert identity_loss(same).item() == pytest.approx(0.0, abs=1e-4)


def test_tiny_training_with_the_identity_head(tmp_path):
    cfg = _tiny(identity_weight=0.5)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    labels = torch.arange(4).repeat_interleave(4)
    task = R.build_task(cfg, _loop(tmp_path), data, labels=labels)
    result = train_loop(_loop(tmp_path), task)
    assert {"id_acc", "id_g"} <= set(result.last) and task.summary["identity_term"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in task.models["d"].classes.parameters())
    assert all(p.grad is not None for p in task.models["g"].parameters())
    saved = ResearchDiscriminator.from_pretrained(str(tmp_path / "out" / "discriminator"))
    assert saved.n_classes == 4 and saved(data[:2], classes=True)[1].shape == (2, 4)
    with pytest.raises(ValueError, match="no identity head"):
        ResearchDiscriminator(ndf=8, image_size=32)(data[:2], classes=True)
    # without labels the same config trains with the term off
    plain = R.build_task(cfg, _loop(tmp_path), data)
    assert plain.models["d"].classes is None and not plain.summary["identity_term"]


@pytest.mark.parametrize("size,nc", [(32, 1), (64, 1), (64, 3)])
def test_resize_generator_shapes(size, nc):
    g = ResearchGenerator(nz=16, ngf=8, nc=nc, image_size=size, upsample="resize")
    x = g(torch.randn(5, 16))
    assert x.shape == (5, nc, size, size) and x.abs().max() <= 1.0


def test_resize_upsampling_round_trips_and_has_no_transposed_doublings(tmp_path):
    g = ResearchGenerator(nz=16, ngf=8, nc=1, image_size=32, upsample="resize").eval()
    kinds = [type(m).__name__ for m in g.main]
    assert kinds.count("ConvTranspose2d") == 1 and kinds.count("Upsample") == 3  # 4 -> 32 px
    g.save_pretrained(tmp_path)
    loaded = ResearchGenerator.from_pretrained(str(tmp_path)).eval()
    assert loaded.upsample == "resize"
    z = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(g(z), loaded(z))
    # a run's checkpoint state (research.gan.watch), either layout
    rebuilt = generator_from_state_dict(g.state_dict()).eval()
    assert rebuilt.upsample == "resize" and (rebuilt.nz, rebuilt.ngf, rebuilt.image_size) == (
        16, 8, 32)
    with torch.no_grad():
        assert torch.equal(g(z), rebuilt(z))
    plain = generator_from_state_dict(Generator(nz=16, ngf=8, image_size=32).state_dict())
    assert type(plain) is Generator and plain.image_size == 32
    with pytest.raises(ValueError, match="upsample"):
        ResearchGenerator(upsample="bilinear-ish")


def test_tiny_training_with_the_resize_generator(tmp_path):
    task = R.build_task(_tiny(upsample="resize"), _loop(tmp_path),
                        torch.rand(16, 1, 32, 32) * 2 - 1)
    train_loop(_loop(tmp_path), task)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.models["g"].parameters())
    saved = ResearchGenerator.from_pretrained(str(tmp_path / "out"))
    assert saved.upsample == "resize"


def test_the_logged_presets_keep_their_switches():
    assert R.PRESETS["abl-b"].d_batch_norm is False
    assert R.PRESETS["abl-b"].r1_gamma == 1.0 and R.PRESETS["abl-b"].real_label == 1.0
