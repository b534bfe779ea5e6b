"""Measure a trained VAE on the held-out people and write its model card.

`python -m playground.vae.card weights/vae-olivetti [--data FACES]` (the bundled
``assets/olivetti_faces.npz`` by default: the same pixels as olivettifaces.mat)
[--checkpoint weights/vae-olivetti-ckpt --preset olivetti] (export an unfinished run's latest
checkpoint first). Writes ``metrics.json`` (read back by the shipped-weights test) and the
model card ``README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from playground.core.training import export_checkpoint as core_export
from playground.data.faces import load_faces
from playground.vae.inference import frame_steps, interpolate_latents
from playground.vae.likelihood import evaluate_elbo
from playground.vae.model import ConvVAE
from playground.vae.split import faces_to_tensor, split_faces
from playground.vae.train import PRESETS, build_model, default_data, resolve_config, save_models

EVAL_SAMPLES = 16  # z draws per held-out face for the ELBO
EVAL_SEED = 0
SMOOTH_FRAMES = 16


def heldout_metrics(model: ConvVAE, data: str) -> dict:
    """Held-out ELBO terms and the interpolation smoothness between the held-out people."""
    _, val = split_faces(load_faces(data))
    x = faces_to_tensor(val.images)
    metrics = evaluate_elbo(model, x, samples=EVAL_SAMPLES, seed=EVAL_SEED)
    metrics["smoothness_max_over_median_step"] = worst_step_ratio(model, x, val.persons)
    metrics.update({"heldout_images": len(x), "heldout_persons":
                    sorted(int(p) for p in np.unique(val.persons)),
                    "eval_samples": EVAL_SAMPLES, "eval_seed": EVAL_SEED})
    return metrics


@torch.no_grad()
def worst_step_ratio(model: ConvVAE, x: torch.Tensor, persons: np.ndarray) -> float:
    """Max over pairs of held-out people (first photos) and both paths of max/median step."""
    firsts = [int(np.flatnonzero(persons == p)[0]) for p in np.unique(persons)]
    mu, _ = model.encode(x[firsts])
    worst = 0.0
    for i in range(len(firsts)):
        for j in range(i + 1, len(firsts)):
            for mode in ("linear", "spherical"):
                steps = frame_steps(model.decode(interpolate_latents(mu[i], mu[j],
                                                                     SMOOTH_FRAMES, mode)))
                worst = max(worst, float(steps.max() / np.median(steps)))
    return worst


def export_checkpoint(checkpoint: Path, preset: str, out: Path) -> int:
    """Save the VAE of an accelerate checkpoint as an HF-format folder; returns its step."""
    cfg = resolve_config(preset)
    return core_export(checkpoint, {"vae": build_model(cfg)}, save_models, out, names=["vae"],
                       summary={"preset": preset, "vae_config": dataclasses.asdict(cfg)})


CARD = """---
library_name: playground
tags: [vae, olivetti, faces]
---
# vae-olivetti: a convolutional VAE of 64×64 grey faces

Our `ConvVAE` (`playground/vae/model.py`, {params:,} parameters, {latent_dim}-d latent),
saved with `huggingface_hub.PyTorchModelHubMixin` (`config.json` + `model.safetensors`).

**Data**: Olivetti / AT&T faces (40 people × 10 photos, 64×64 grey, 8-bit; credit: AT&T
Laboratories Cambridge). Whole people held out for validation:
`split_by_person(n_val_persons=5, seed=0)` holds out persons {persons} ({n_val} photos);
{n_train} photos of 35 people train. Augmentation: random mirror and shifts of up to 2 px.

**Likelihood**: a *discretized logistic* per pixel over the 256 grey levels (PixelCNN++-style;
the end bins reach to ±∞); mean from the decoder, {scale_note}. Its values are probabilities of
the 8-bit data, so the negative ELBO in bits/dim is an upper bound on the code length
(uniform noise = 8 bits/dim); no dequantization correction is needed.

**Loss**: −ELBO = NLL + β·KL with β = {beta} (the true ELBO), ramped linearly from 0 over the
first {warmup} steps. Adam lr {lr}, batch {batch}.

## Held-out metrics (5 unseen people, {n_val} photos)
| metric | value |
|---|---|
| −ELBO (bits/dim), {samples} z samples per face, seed {seed} | **{bpd:.4f}** |
| reconstruction NLL (bits/dim) | {nll:.4f} |
| KL(q(z given x) ‖ p(z)) per face (nats) | {kl:.2f} |
| reconstruction MSE (decoder mean at the posterior mean; pixels in [0, 1]) | {mse:.5f} |
| interpolation smoothness: worst max/median frame step ({pairs} pairs × 2 paths, \
16 frames) | {smooth:.2f} |

`tests/test_vae_shipped.py` recomputes the −ELBO and the smoothness from these weights.

## Training
- steps: {steps}; wall time: {wall}; device: {device} (one thread, `OMP_NUM_THREADS=1`, on a
  shared 2-core machine)
- command:
```
{command}
python -m playground.vae.card weights/vae-olivetti --data ../shared/data/faces/olivettifaces.mat
```
"""


def write_card(folder: Path, data: str, command: str) -> dict:
    model = ConvVAE.from_pretrained(str(folder)).eval()
    metrics = heldout_metrics(model, data)
    summary_path = folder / "training_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    cfg = summary.get("vae_config") or {}
    cfg = {**PRESETS["olivetti"].__dict__, **cfg}
    wall = summary.get("wall_time_s")
    n_val = metrics["heldout_images"]
    text = CARD.format(
        params=sum(p.numel() for p in model.parameters()), latent_dim=model.latent_dim,
        scale_note="log-scale from the decoder too" if model.per_image_scale else
        "log-scale learned per pixel position and shared by all faces (a decoder-predicted "
        "scale overfitted the 350 training photos: held-out -ELBO rose after 500 steps)",
        persons=metrics["heldout_persons"], n_val=n_val, n_train=400 - n_val,
        beta=cfg["beta"], warmup=cfg["kl_warmup"], lr=cfg["lr"], batch=cfg["batch_size"],
        samples=EVAL_SAMPLES, seed=EVAL_SEED, bpd=metrics["bits_per_dim"],
        nll=metrics["nll_bits_per_dim"], kl=metrics["kl_nats"], mse=metrics["mse"],
        pairs=len(metrics["heldout_persons"]) * (len(metrics["heldout_persons"]) - 1) // 2,
        smooth=metrics["smoothness_max_over_median_step"], steps=summary.get("steps"),
        wall=f"{wall / 60:.1f} min" if wall else "see training_summary.json",
        device=summary.get("device", "cpu"), command=command)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (folder / "README.md").write_text(text)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--data", default=None, help="faces (.npz/.mat/folder); default: the "
                        "bundled assets/olivetti_faces.npz or $PLAYGROUND_FACES")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--preset", default="olivetti")
    parser.add_argument("--command", default="python -m playground.train vae --preset olivetti "
                        "--data ../shared/data/faces/olivettifaces.mat --out weights/vae-olivetti "
                        "--log-every 100 --checkpoint-every 250")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.folder)
    data = args.data or default_data()
    if args.checkpoint:
        export_checkpoint(Path(args.checkpoint), args.preset, folder)
    print(json.dumps(write_card(folder, data, args.command), indent=1))


if __name__ == "__main__":
    main()
