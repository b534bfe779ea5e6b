"""Flow rows: the 200×200 density grid vs the zuko model called directly on the same points;
a training step on the shared loop vs a plain zuko training loop (time per step, same sizes)."""

from __future__ import annotations

import time

import torch

from bench.registry import benchmark, best_of_pair

TRAIN_STEPS = 100


def _shipped(target: str = "8gaussians"):
    from playground import flow
    from playground.flow.inference import load_flow

    flow.register_models()
    return load_flow(flow.shipped_name(target))


@benchmark("flow: 200x200 density grid / zuko log_prob on the grid")
def density_grid_row() -> dict:
    from playground.data.targets2d import grid_points
    from playground.flow.metrics import density_grid

    torch.set_num_threads(1)
    model = _shipped()
    pts, _ = grid_points(200)
    pts = pts.to(next(model.parameters()).device)  # the loader puts the flow on the device

    def raw():
        with torch.no_grad():
            model.flow().log_prob(pts)
    ours, reference = best_of_pair(lambda: density_grid(model, 200), raw, repeats=3)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "NSF 6×96 (shipped); ours adds grid building, chunking, mass in box"}


def _plain_zuko_seconds_per_step(cfg, steps: int) -> float:
    """The loop from zuko's README: flow = NSF(...); loss = -flow().log_prob(x).mean()."""
    import zuko

    from playground.data.targets2d import get_target

    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, transforms=cfg.depth, hidden_features=(cfg.width, cfg.width),
                          bins=cfg.bins)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    gen, target = torch.Generator().manual_seed(1), get_target(cfg.target)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = target.sample(cfg.batch_size, gen)
        loss = -flow().log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def _ours_seconds_per_step(cfg, steps: int) -> float:
    from playground.core.training import LoopConfig, train_loop
    from playground.flow.train import build_task

    loop = LoopConfig(max_steps=steps, log_every=steps, progress=False, device="cpu")
    result = train_loop(loop, build_task(cfg, loop))
    return result.wall_time_s / steps


@benchmark("flow: train step (shared loop) / plain zuko loop, s per step")
def train_step_row() -> dict:
    from playground.flow.train import resolve_config

    torch.set_num_threads(1)
    cfg = resolve_config("live")
    _plain_zuko_seconds_per_step(cfg, 10)  # warm-up
    reference = min(_plain_zuko_seconds_per_step(cfg, TRAIN_STEPS) for _ in range(2))
    ours = min(_ours_seconds_per_step(cfg, TRAIN_STEPS) for _ in range(2))
    return {"ours": ours, "reference": reference, "unit": "s/step",
            "note": f"NSF {cfg.depth}×{cfg.width}, batch {cfg.batch_size}; ours adds accelerate, "
                    "LR schedule, grad clipping, one test-NLL/KL evaluation"}


def _plain_zuko_reverse_seconds_per_step(cfg, steps: int) -> float:
    """A reverse-KL loop written directly on zuko: x, log q = flow().rsample_and_log_prob."""
    import zuko

    from playground.flow.energies import get_energy

    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, transforms=cfg.depth, hidden_features=(cfg.width, cfg.width),
                          bins=cfg.bins)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    energy = get_energy(cfg.energy)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, log_q = flow().rsample_and_log_prob((cfg.batch_size,))
        loss = (log_q - energy.log_p(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


@benchmark("flow: reverse-KL step (shared loop) / plain zuko loop, s per step")
def reverse_kl_step_row() -> dict:
    from playground.flow.train import resolve_config

    torch.set_num_threads(1)
    cfg = resolve_config("energy", {"energy": "banana", "compare_samples": False})
    _plain_zuko_reverse_seconds_per_step(cfg, 10)  # warm-up
    reference = min(_plain_zuko_reverse_seconds_per_step(cfg, TRAIN_STEPS) for _ in range(2))
    ours = min(_ours_seconds_per_step(cfg, TRAIN_STEPS) for _ in range(2))
    return {"ours": ours, "reference": reference, "unit": "s/step",
            "note": f"NSF {cfg.depth}×{cfg.width}, batch {cfg.batch_size}, banana energy; ours "
                    "adds accelerate, LR schedule, clipping, one fit report (2000 samples)"}
