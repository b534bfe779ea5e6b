"""GAN rows: the sampling request vs a raw generator forward; our training step vs a
pytorch/examples-style DCGAN loop on the same model sizes and batch (time per image); the
directions edit vs a raw forward of the same latents; a find-this-face step vs a raw Adam step."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.registry import benchmark, best_of_pair

N_FACES = 16
TRAIN_STEPS = 32  # two of the recipe's lazy R1 steps (every 16) fall inside, as in training


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
                    f"label smoothing, the EMA of G and a lazy R1 step every {cfg.r1_every}"}


@benchmark("gan: edit along 4 directions (5 faces each) / raw G forward")
def directions_edit() -> dict:
    from playground.gan.directions import edit_latent, sefa_directions
    from playground.gan.inference import latent, load_generator
    from playground.gan.inside import edit_along_directions

    name = _shipped_name()
    model = load_generator(name)
    picks = [(1, 3.0), (2, -3.0), (3, 2.0), (4, 2.0)]
    dirs = sefa_directions(model)
    z = latent(0, model.nz)
    # the same faces: start, the combined edit, and 5 along each of the 4 directions
    walk = [edit_latent(z, dirs, [(i, float(t))]) for i, s in picks
            for t in torch.linspace(-s, s, 5)]
    batch = torch.stack([z, edit_latent(z, dirs, picks), *walk])

    def raw():
        with torch.no_grad():
            model(batch)
    ours, reference = best_of_pair(
        lambda: edit_along_directions(name, "seed", 0, "sefa", picks, 5), raw, repeats=5)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "ours adds validation, the nearest photo (pixels) and face-id person of "
            "all 22 faces, two PNG sheets with records; directions cached"}


@benchmark("gan: find-this-face step / raw Adam step on z")
def find_face_step() -> dict:
    from playground.core import registry
    from playground.core.training import train_loop
    from playground.gan import FAMILY
    from playground.gan.find import build_run
    from playground.gan.inference import read_generator, training_faces

    name = _shipped_name()
    source = str(registry.resolve(FAMILY, name).path)
    target = training_faces(64).images[7][None]
    steps, times = 40, []
    loop, task = build_run(None, source, name, target, steps, "z", 0.1, 0, "cpu", {"params": {}})
    loop.sample_every, loop.sample_at_start, loop.out_dir = 0, False, None
    inner = task.step

    def timed_step(ctx, batch):
        t0 = time.perf_counter()
        out = inner(ctx, batch)
        times.append(time.perf_counter() - t0)
        return out
    task.step = timed_step
    train_loop(loop, task)
    g = read_generator(source).requires_grad_(False)
    goal = torch.from_numpy(target)[None] * 2 - 1
    z = torch.zeros(1, g.nz, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    raw = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = F.mse_loss(g(z), goal)
        opt.zero_grad()
        loss.backward()
        opt.step()
        raw.append(time.perf_counter() - t0)
    return {"ours": float(np.median(times[1:])), "reference": float(np.median(raw[1:])),
            "unit": "s/step", "note": "ours adds the face-id feature loss (weight 0.1), the "
            "latent prior and per-step metrics; medians of 40 steps"}
