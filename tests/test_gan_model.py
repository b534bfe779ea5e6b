"""GAN family: model shapes, tutorial checkpoint layout, save/load, sampling, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from playground.core import registry
from playground.core.ema import update_ema
from playground.core.errors import UserInputError
from playground.core.latent import slerp
from playground.core.training import LoopConfig, train_loop
from playground.gan import FAMILY, PRETRAINED_NAME, pretrained_package_dir, register_models
from playground.gan.augment import augment_real, diff_augment, faces_to_tensor, shift
from playground.gan.inference import generate, interpolate_faces, latent, sample_faces
from playground.gan.model import Discriminator, Generator, generator_from_tutorial_state_dict
from playground.gan.train import PRESETS, build_task, resolve_config


@pytest.mark.parametrize("size,nc", [(32, 1), (64, 1), (64, 3)])
def test_shapes(size, nc):
    g = Generator(nz=16, ngf=8, nc=nc, image_size=size)
    d = Discriminator(ndf=8, nc=nc, image_size=size)
    x = g(torch.randn(5, 16))
    assert x.shape == (5, nc, size, size) and x.dtype == torch.float32
    assert x.abs().max() <= 1.0
    assert d(x).shape == (5,)


def _tutorial_generator(nz=100, ngf=64, nc=3) -> nn.Module:
    """The pytorch DCGAN tutorial's netG, layer for layer."""
    class TutorialG(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),
                nn.ReLU(True), nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

        def forward(self, z):
            return self.main(z)
    return TutorialG()


def test_tutorial_state_dict_loads_into_our_generator():
    torch.manual_seed(0)
    ref = _tutorial_generator(nz=20, ngf=8, nc=3).eval()
    for m in ref.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = generator_from_tutorial_state_dict(ref.state_dict())
    assert (ours.nz, ours.ngf, ours.nc, ours.image_size) == (20, 8, 3, 64)
    z = torch.randn(3, 20, 1, 1)
    with torch.no_grad():
        assert torch.allclose(ours(z), ref(z), atol=1e-6)
    # the default configuration is the tutorial's nz=100, ngf=64, nc=3 layout, key for key
    assert Generator(nc=3).state_dict().keys() == _tutorial_generator().state_dict().keys()


@pytest.mark.skipif(pretrained_package_dir() is None, reason="gan-face-generate not installed")
def test_pretrained_package_samples_colour_faces():
    register_models()
    out = sample_faces(PRETRAINED_NAME, seed=1, n=2)
    assert out.images[0].mode == "RGB" and out.images[0].size == (128, 128)
    assert out.nearest is None  # no Olivetti neighbours for a colour DigiFace model


def test_save_load_round_trip(tmp_path):
    g = Generator(nz=16, ngf=8, nc=1, image_size=32).eval()
    g.save_pretrained(tmp_path)
    loaded = Generator.from_pretrained(str(tmp_path)).eval()
    assert (loaded.nz, loaded.ngf, loaded.image_size) == (16, 8, 32)
    z = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(g(z), loaded(z))
    assert (tmp_path / "model.safetensors").is_file()


@pytest.fixture
def tiny_model(tmp_path):
    """A random tiny generator registered as a local model."""
    g = Generator(nz=16, ngf=8, nc=1, image_size=32).eval()
    g.save_pretrained(tmp_path / "g")
    registry.register(registry.ModelEntry("test-tiny-gan", FAMILY, path=tmp_path / "g"))
    return "test-tiny-gan"


def test_sampling_is_deterministic_and_seed_dependent(tiny_model):
    a = sample_faces(tiny_model, seed=7, n=4)
    b = sample_faces(tiny_model, seed=7, n=4)
    assert a.seeds == [7, 8, 9, 10]
    for x, y in zip(a.images, b.images, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(a.images[1]))
    # a face from a grid is reproduced alone from its own seed (what 'click to reuse' does)
    alone = sample_faces(tiny_model, seed=0, n=1, seed_list="9")
    assert np.array_equal(np.asarray(alone.images[0]), np.asarray(a.images[2]))
    assert a.record["seed"] == 7 and a.record["params"]["seeds"] == [7, 8, 9, 10]


def test_a_request_resolves_its_model_once(tiny_model, monkeypatch):
    calls = []
    resolve = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda *args: calls.append(args) or resolve(*args))
    sample_faces(tiny_model, seed=0, n=2)
    interpolate_faces(tiny_model, 0, 1, frames=2)
    assert calls == [(FAMILY, tiny_model)] * 2  # one per request, passed down to the loader


def test_psi_zero_gives_the_mean_face_for_every_seed(tiny_model):
    out = sample_faces(tiny_model, seed_list="0 1 2 99 123456789", psi=0.0)
    g = Generator.from_pretrained(str(registry.resolve(FAMILY, tiny_model).path)).eval()
    mean_face = generate(g, torch.zeros(1, 16))[0]
    first = np.asarray(out.images[0])
    for img in out.images:
        assert np.array_equal(np.asarray(img), first)
    expected = (mean_face[0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(first[::2, ::2], expected)
    half = sample_faces(tiny_model, seed_list="0 1", psi=0.5)
    assert not np.array_equal(np.asarray(half.images[0]), np.asarray(half.images[1]))


def test_interpolation_endpoints_are_the_seeds_faces(tiny_model):
    for mode in ("linear", "spherical"):
        out = interpolate_faces(tiny_model, 3, 5, frames=5, mode=mode)
        grid = sample_faces(tiny_model, seed_list="3 5")
        assert len(out.frames) == 5 and out.gif.endswith(".gif")
        assert np.array_equal(np.asarray(out.frames[0]), np.asarray(grid.images[0]))
        assert np.array_equal(np.asarray(out.frames[-1]), np.asarray(grid.images[1]))
    za, zb = latent(1, 16), latent(2, 16)
    mid = slerp(za, zb, 0.5)  # core's slerp: the length moves linearly from |za| to |zb|
    assert mid.norm() == pytest.approx(float(za.norm() + zb.norm()) / 2, rel=1e-5)
    out = interpolate_faces(tiny_model, 1, 2, frames=3, mode="spherical")
    g = Generator.from_pretrained(str(registry.resolve(FAMILY, tiny_model).path)).eval()
    expected = (generate(g, mid[None])[0, 0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(out.frames[1])[::2, ::2], expected)


@pytest.mark.parametrize("preset,overrides,message", [
    ("huge", {}, "Unknown preset"),
    ("tiny", {"width": 3}, "Unknown GAN setting"),
    ("tiny", {"export": "best"}, "'ema' or 'raw'"),
    ("tiny", {"image_size": 48}, "image_size must be one of"),
])
def test_resolve_config_refuses_bad_settings(preset, overrides, message):
    with pytest.raises(UserInputError, match=message):
        resolve_config(preset, overrides)


def test_resolve_config_applies_overrides():
    cfg = resolve_config("olivetti", {"steps": 7, "export": "raw"})
    assert (cfg.steps, cfg.export, cfg.image_size) == (7, "raw", 64)
    assert (PRESETS["olivetti"].steps, PRESETS["olivetti"].export) == (4000, "ema")  # untouched


def test_ema_follows_g_and_copies_its_batch_norm_statistics():
    g = Generator(nz=16, ngf=8, nc=1, image_size=32)
    ema = Generator(nz=16, ngf=8, nc=1, image_size=32)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        g.main[1].running_mean.fill_(0.5)
    before = ema.main[0].weight.clone()
    update_ema(ema, g, 0.9, copy_buffers=True)
    assert torch.allclose(ema.main[0].weight, 0.9 * before + 0.1 * g.main[0].weight)
    assert torch.equal(ema.main[1].running_mean, g.main[1].running_mean)


def test_augmentations():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    moved = shift(x, torch.tensor([1]), torch.tensor([0]))
    assert torch.equal(moved[0, 0, :, 1:], x[0, 0, :, :3])  # content moved one pixel right
    gen = torch.Generator().manual_seed(0)
    batch = torch.rand(6, 1, 32, 32, requires_grad=True)
    out = diff_augment(batch, gen)
    out.sum().backward()
    assert out.shape == batch.shape and batch.grad is not None
    assert augment_real(batch.detach(), gen, 2).shape == batch.shape
    assert faces_to_tensor(np.ones((2, 64, 64), np.float32), 32).shape == (2, 1, 32, 32)


def test_tiny_training_changes_the_generator_and_reaches_every_parameter(tmp_path):
    cfg = dataclasses.replace(PRESETS["tiny"], steps=6)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    loop = LoopConfig(max_steps=6, log_every=3, out_dir=str(tmp_path / "out"), progress=False,
                      sample_every=3, device="cpu")
    task = build_task(cfg, loop, data)
    g, d = task.models["g"], task.models["d"]
    before = {k: v.clone() for k, v in task.models["g_ema"].state_dict().items()}
    result = train_loop(loop, task)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())
    assert {"loss_d", "loss_g", "d_x", "d_g_z"} <= set(result.last)
    assert 0 <= result.last["d_x"] <= 1 and 0 <= result.last["d_g_z"] <= 1
    assert result.samples and result.samples[-1][1].shape == (16, 1, 32, 32)
    saved = Generator.from_pretrained(str(tmp_path / "out"))
    changed = [k for k, v in saved.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2
    assert (tmp_path / "out" / "discriminator" / "model.safetensors").is_file()


def test_export_raw_saves_g_itself_and_ema_is_recalibrated(tmp_path):
    from playground.gan.train import recalibrate_batch_norm

    data = torch.rand(16, 1, 32, 32) * 2 - 1
    cfg = dataclasses.replace(PRESETS["tiny"], export="raw")
    loop = LoopConfig(max_steps=3, log_every=3, out_dir=str(tmp_path / "raw"), progress=False,
                      device="cpu")
    task = build_task(cfg, loop, data)
    train_loop(loop, task)
    saved = Generator.from_pretrained(str(tmp_path / "raw")).state_dict()
    assert all(torch.equal(v, task.models["g"].state_dict()[k]) for k, v in saved.items())
    g = Generator(nz=16, ngf=8, nc=1, image_size=32)
    calibrated = recalibrate_batch_norm(g, batches=2, batch_size=8)
    bn = calibrated.main[1]
    assert not calibrated.training and bn.num_batches_tracked == 2
    assert not torch.equal(bn.running_mean, g.main[1].running_mean)  # g itself is untouched
