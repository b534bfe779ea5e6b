"""GAN rows: the sampling request vs a raw generator forward; our training step vs a
pytorch/examples-style DCGAN loop on the same model sizes and batch (time per image)."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bench.registry import benchmark, best_of_pair

N_FACES = 16
TRAIN_STEPS = 12


def _shipped_name() -> str:
    from playground import gan

    gan.register_models()
    return gan.SHIPPED


@benchmark("gan: sample 16 faces / raw G forward")
def sampling() -> dict:
    from playground.gan.inference import latent, load_generator, sample_faces

    name = _shipped_name()
    model = load_generator(name)
    z = torch.stack([latent(s, model.nz) for s in range(N_FACES)])

    def raw():
        with torch.no_grad():
            model(z)
    ours, reference = best_of_pair(lambda: sample_faces(name, seed=0, n=N_FACES), raw,
                                   repeats=5)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "ours adds seeding, nearest training photo of each face, PNG grid "
            "and one PNG per face, each with its record"}


def _reference_dcgan_seconds_per_image(cfg, data: torch.Tensor, steps: int) -> float:
    """pytorch/examples dcgan main loop: BCE, Adam(0.5, 0.999), D step then G step."""
    from playground.gan.model import Discriminator, Generator

    torch.manual_seed(0)
    net_g = Generator(nz=cfg.nz, ngf=cfg.ngf, nc=1, image_size=cfg.image_size)
    net_d = Discriminator(ndf=cfg.ndf, nc=1, image_size=cfg.image_size, spectral_norm=False)
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    b = cfg.batch_size

    def one_step(i: int) -> None:
        real = data[(torch.arange(b) + i * b) % len(data)]
        net_d.zero_grad()
        err_real = F.binary_cross_entropy_with_logits(net_d(real), torch.ones(b))
        err_real.backward()
        fake = net_g(torch.randn(b, cfg.nz, 1, 1))
        err_fake = F.binary_cross_entropy_with_logits(net_d(fake.detach()), torch.zeros(b))
        err_fake.backward()
        opt_d.step()
        net_g.zero_grad()
        F.binary_cross_entropy_with_logits(net_d(fake), torch.ones(b)).backward()
        opt_g.step()
    one_step(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(steps):
        one_step(i + 1)
    return (time.perf_counter() - t0) / (steps * b)


def _ours_seconds_per_image(cfg, data: torch.Tensor, steps: int) -> float:
    from playground.core.training import LoopConfig, train_loop
    from playground.gan.train import build_task

    loop = LoopConfig(max_steps=steps + 1, log_every=steps + 1, progress=False, device="cpu")
    times: list[float] = []
    task = build_task(cfg, loop, data)
    inner = task.step

    def timed_step(ctx, batch):  # time the steps only (not accelerate's set-up)
        t0 = time.perf_counter()
        out = inner(ctx, batch)
        times.append(time.perf_counter() - t0)
        return out
    task.step = timed_step
    train_loop(loop, task)
    return sum(times[1:]) / (steps * cfg.batch_size)


@benchmark("gan: train time per image / pytorch-examples loop")
def training() -> dict:
    from playground.gan.train import resolve_config

    cfg = resolve_config("olivetti")
    data = torch.rand(256, 1, cfg.image_size, cfg.image_size) * 2 - 1
    reference = _reference_dcgan_seconds_per_image(cfg, data, TRAIN_STEPS)
    ours = _ours_seconds_per_image(cfg, data, TRAIN_STEPS)
    return {"ours": ours, "reference": reference, "unit": "s/img",
            "note": f"64 px, ngf=ndf={cfg.ngf}, batch {cfg.batch_size}; ours adds DiffAugment x3, "
                    "label smoothing and the EMA of G"}
