"""Issue 24 probe: the β tug-of-war of the in-browser VAE run, measured. The same live run as
the tab's (``playground.vae.live.build_run``: the olivetti-quick preset, the bundled faces,
held-out people excluded) for each β, in this process; prints the last logged row's
reconstruction and KL terms (nats per face) and the held-out -ELBO.

`OMP_NUM_THREADS=1 python -m research.vae_beta_tug --steps 300 --betas 0.1 4`
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from playground.core.training import train_loop
from playground.data.faces import faces_source
from playground.vae.live import build_run


def measure(steps: int, beta: float, seed: int, latent_dim: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        loop, task = build_run(out, steps=steps, device="cpu", latent_dim=latent_dim,
                               faces=str(faces_source()), beta=beta, seed=seed)
        loop.out_dir = None  # measure only
        history = train_loop(loop, task).history
    last = history[-1]
    return {"beta": beta, "steps": steps, "seed": seed, "latent_dim": latent_dim,
            "recon_nats": round(last["recon_nats"], 1), "kl_nats": round(last["kl"], 2),
            "val_bits_per_dim": round(last["val_bits_per_dim"], 4),
            "val_kl_nats": round(last["val_kl_nats"], 2),
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 4.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-dim", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for beta in args.betas:
        print(json.dumps(measure(args.steps, beta, args.seed, args.latent_dim)), flush=True)


if __name__ == "__main__":
    main()
