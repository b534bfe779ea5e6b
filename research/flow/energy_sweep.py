"""Each energy fitted by reverse KL with the in-browser default (the ``energy`` preset), beside
its twin fitted to samples: true KL both ways, ESS, modes covered, time per step.

`python -m research.flow.energy_sweep [--steps 500] [--seeds 0] [--energies mixture,ring]
[--set depth=2]` (default: the preset's steps)
prints a markdown table (one row per fit); the figures in LOG.md come from it.
"""

from __future__ import annotations

import argparse
import time

import torch

from playground.core.training import LoopConfig, train_loop
from playground.flow.energies import ENERGIES
from playground.flow.reverse import fit_report
from playground.flow.train import build_task, resolve_config
from playground.train import parse_overrides

FITS = (("flow", "reverse KL (energy)"), ("samples_fit", "forward KL (samples)"))


def run_one(energy: str, seed: int, steps: int, overrides: dict) -> list[dict]:
    cfg = resolve_config("energy", {"energy": energy, "steps": steps, **overrides})
    loop = LoopConfig(max_steps=steps, log_every=steps, seed=seed, progress=False,
                      device="cpu", checkpoints=False)
    task = build_task(cfg, loop)
    t0 = time.perf_counter()
    train_loop(loop, task)
    per_step = (time.perf_counter() - t0) / steps
    rows = []
    for name, label in FITS:
        if name not in task.models:
            continue
        report = fit_report(task.models[name], ENERGIES[energy], n=20_000, seed=99)
        rows.append({"energy": energy, "seed": seed, "fit": label,
                     "KL(q‖p)": report.reverse_kl, "KL(p‖q)": report.forward_kl,
                     "ESS": report.ess, "modes": "—" if report.modes is None
                     else f"{report.modes_covered}/{report.modes}",
                     "ms/step (both fits)": 1000 * per_step})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=resolve_config("energy").steps)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--energies", default=",".join(ENERGIES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = parse_overrides(args.set)
    keys = ["energy", "seed", "fit", "KL(q‖p)", "KL(p‖q)", "ESS", "modes", "ms/step (both fits)"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys), flush=True)
    for energy in args.energies.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for row in run_one(energy, seed, args.steps, overrides):
                print("| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float)
                                        else str(row[k]) for k in keys) + " |", flush=True)


if __name__ == "__main__":
    main()
