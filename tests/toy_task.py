"""A tiny linear-regression task on the shared training loop (used by the core tests)."""

from __future__ import annotations

import sys
import threading

import torch
from safetensors.torch import load_file, save_file

from playground.core.training import LoopConfig, TrainTask, train_loop

TRUE_W = torch.tensor([[2.0], [-1.0]])


def batches(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(16, 2, generator=gen)
        yield x, x @ TRUE_W


def make_task(lr: float = 0.05, on_step=None, noise: float = 0.0) -> TrainTask:
    """``noise``: the std of label noise drawn from the step's generator (``ctx.generator``)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(ctx, batch):
        x, y = batch
        if noise:
            y = y + noise * torch.randn(y.shape, generator=ctx.generator)
        loss = ((ctx.models["lin"](x) - y) ** 2).mean()
        ctx.optimizers["lin"].zero_grad()
        ctx.accelerator.backward(loss)
        ctx.optimizers["lin"].step()
        if on_step:
            on_step(ctx.step)
        return {"loss": loss.item()}

    def save(models, folder):
        save_file(models["lin"].state_dict(), str(folder / "model.safetensors"))

    def sample(models, step):
        return models["lin"].weight.detach().clone()

    return TrainTask({"lin": model}, {"lin": opt}, batches(), step, save, sample=sample)


def load_weight(folder) -> torch.Tensor:
    return load_file(str(folder / "model.safetensors"))["weight"]


def run(out: str, max_steps: int, cancel_at: int | None = None, resume: bool = False,
        sample_at_start: bool = False, noise: float = 0.0):
    cancel = threading.Event()
    task = make_task(on_step=lambda s: cancel.set() if cancel_at and s >= cancel_at else None,
                     noise=noise)
    cfg = LoopConfig(max_steps=max_steps, out_dir=out, log_every=5, sample_every=10,
                     sample_at_start=sample_at_start, checkpoint_every=20, resume=resume,
                     progress=False)
    return train_loop(cfg, task, cancel=cancel)


if __name__ == "__main__":  # `accelerate launch ... -m tests.toy_task OUT STEPS`
    from playground.core.distributed import relaunch_cpu_workers

    rc = relaunch_cpu_workers("tests.toy_task", sys.argv[1:])
    if rc is not None:
        raise SystemExit(rc)
    import os
    from pathlib import Path

    result = run(sys.argv[1], int(sys.argv[2]))
    rank = os.environ.get("RANK", "0")  # one file per process: stdout lines interleave
    Path(f"{sys.argv[1]}.rank{rank}").write_text(f"{result.steps} {result.last.get('loss')}")


def build_live_run(out_dir: str, steps: int, step_sleep_s: float = 0.0,
                   fail_at: int | None = None) -> tuple[LoopConfig, TrainTask]:
    """A live-run builder for ``core.live`` tests (runs in the worker process)."""
    import time

    def on_step(step: int) -> None:
        if step_sleep_s:
            time.sleep(step_sleep_s)
        if fail_at is not None and step >= fail_at:
            from playground.core.errors import UserInputError
            raise UserInputError(f"toy failure at step {step}")

    loop = LoopConfig(max_steps=steps, out_dir=out_dir, log_every=1, sample_every=5,
                      progress=False, checkpoints=False)
    return loop, make_task(on_step=on_step)
