"""Second model, stage 1: short VAE ablations and the measures that chose the VAE
(LOG-second-model.md, "The VAE").

    python -m research.txt2img.vae_ablation train VARIANT --out /work/runs/t2i2-abl-VARIANT
    python -m research.txt2img.vae_ablation score FOLDER [FOLDER ...] [--n 200]
    python -m research.txt2img.vae_ablation export PRESET CKPT TARGET   # a run's VAE so far

``train`` runs stage 1 of ``playground/txt2img/vae_stage.py`` alone (no decoder stage, no
UNet) with the ``shapes`` preset's data and model plus the variant's changes, for ``--steps``
steps of ``--batch`` images (the last third on a cosine to 0). ``score`` reconstructs
(posterior means) images with held-out colour+shape pairs, seen scenes and the five plain
backgrounds, and prints the
checker's reconstruction ceiling (adherence.py), the artefact measures (artefacts.py), the
latent spread (vae_stage.latent_spread) and its down-right / up-left ratio. A FOLDER is a VAE
folder or a pipeline folder (its ``vae/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from playground.core.training import LoopConfig
from playground.txt2img import adherence, artefacts
from playground.txt2img import train as T
from playground.txt2img.shapes import (
    BACKGROUNDS,
    PALETTE,
    Scene,
    background_colour,
    images_to_tensor,
    make_dataset,
)
from playground.txt2img.vae_stage import encode_latents, object_footprint, train_vae_stage

# the changes each variant makes to the `shapes` preset's VAE stage
VARIANTS: dict[str, dict] = {
    "base": {},  # the shipped recipe (16 GroupNorm groups of one channel, KL 1e-6)
    "gn1": {"vae_norm_groups": 1},  # one GroupNorm group: keeps a plain plane's colour
    "kl4": {"kl_weight": 1e-4},  # 100x the KL term
    "loc": {"locality_weight": 1.0},  # the locality term
    "gn1-loc": {"vae_norm_groups": 1, "locality_weight": 1.0},
}


def variant_config(name: str, steps: int, batch: int = 16) -> T.TrainConfig:
    changes = dict(VARIANTS[name])
    model = T.shapes_model()
    if "vae_norm_groups" in changes:
        model = dataclasses.replace(model, vae_norm_groups=changes.pop("vae_norm_groups"))
    return dataclasses.replace(T.PRESETS["shapes"], model=model, vae_steps=steps,
                               vae_decay_steps=steps // 3, vae_batch=batch, **changes)


def train(name: str, out: str, steps: int, batch: int) -> None:
    cfg = variant_config(name, steps, batch)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, _ = T.training_images(cfg)
    train_vae_stage(cfg, LoopConfig(out_dir=out, seed=0), images, Path(out))


def export(preset: str, ckpt: str, target: str) -> int:
    """The VAE of a VAE-stage checkpoint (e.g. /work/runs/t2i2-vae-ckpt of preset shapes2-vae)
    written to ``target``, to score a run still going; returns its step."""
    from playground.core.training import export_checkpoint
    from playground.txt2img import model as M
    from playground.txt2img.vae_stage import _save_vae

    cfg = T.resolve_config(preset)
    return export_checkpoint(ckpt, {"vae": M.build_vae(cfg.model)}, _save_vae, target,
                             names=["vae"], summary={"stage": "vae", "preset": preset})


def load_vae(folder: str):
    from diffusers import AutoencoderKL

    sub = "vae" if (Path(folder) / "vae" / "config.json").exists() else None
    return AutoencoderKL.from_pretrained(folder, subfolder=sub, torch_dtype=torch.float32).eval()


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """uint8 (N, S, S, 3) -> the VAE's reconstructions from posterior means, uint8."""
    x = images_to_tensor(images)
    out = [vae.decode(encode_latents(vae, x[i:i + batch])).sample
           for i in range(0, len(x), batch)]
    recon = ((torch.cat(out).clamp(-1, 1) + 1) * 127.5).round().byte()
    return recon.permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def spread_figures(vae, images: np.ndarray) -> dict[str, float]:
    """Mean latent spread of ``images`` against their plain backgrounds, and the ratio of the
    spread energy down-right of each image's object centre to that up-left of it."""
    x = images_to_tensor(images)
    z = encode_latents(vae, x)
    z_plain = encode_latents(vae, background_colour(x).expand_as(x).contiguous())
    footprint = object_footprint(x, z.shape[-1])  # (N, 1, s, s)
    energy = ((z - z_plain) ** 2).sum(1, keepdim=True) * (1 - footprint)
    total = ((z - z_plain) ** 2).sum((1, 2, 3)) + 1e-6
    core = object_footprint(x, z.shape[-1], grow=0)[:, 0]  # (N, s, s)
    s = z.shape[-1]
    grid = torch.arange(s, dtype=torch.float32)
    weight = core.sum((1, 2)).clamp(min=1)
    cy = (core.sum(2) * grid).sum(1) / weight  # (N,)
    cx = (core.sum(1) * grid).sum(1) / weight
    below = grid.view(1, s, 1) > cy.view(-1, 1, 1)
    right = grid.view(1, 1, s) > cx.view(-1, 1, 1)
    above = grid.view(1, s, 1) < cy.view(-1, 1, 1)
    left = grid.view(1, 1, s) < cx.view(-1, 1, 1)
    e = energy[:, 0]
    down_right = float((e * (below & right)).sum())
    up_left = float((e * (above & left)).sum())
    return {"latent_spread": float((energy.sum((1, 2, 3)) / total).mean()),
            "spread_down_right_over_up_left": down_right / max(up_left, 1e-9)}


def plain_backgrounds() -> tuple[list[Scene], np.ndarray]:
    scenes = [Scene((), b) for b in BACKGROUNDS]
    images = np.stack([np.full((64, 64, 3), PALETTE[b], np.uint8) for b in BACKGROUNDS])
    return scenes, images


def score_folder(folder: str, n: int) -> dict:
    vae = load_vae(folder)
    held, held_scenes = make_dataset(n, seed=500, held_out=True)
    seen, seen_scenes = make_dataset(n // 2, seed=501)
    one = np.array([len(s.objects) == 1 for s in held_scenes])
    plain_scenes, plain = plain_backgrounds()
    out = {"folder": folder}
    for name, scenes, images in (("held_out", held_scenes, held), ("seen", seen_scenes, seen)):
        recon = reconstruct(vae, images)
        rows = adherence.score(scenes, list(recon))
        mse = float(((recon.astype(np.float32) - images) / 255.0).__pow__(2).mean())
        out[name] = {"n": len(scenes), "colour+shape": rows["colour+shape"], "all": rows["all"],
                     "mse": mse, **artefacts.score(scenes, list(recon)).as_dict()}
    recon = reconstruct(vae, plain)
    results = [artefacts.measure(s, im) for s, im in zip(plain_scenes, recon, strict=True)]
    out["plain"] = {"tint_max": max(r.tint for r in results),
                    "frame_max": max(r.frame for r in results),
                    "tint": {s.background: round(r.tint, 2)
                             for s, r in zip(plain_scenes, results, strict=True)}}
    out["latents"] = spread_figures(vae, held[one])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("variant", choices=list(VARIANTS))
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=16)
    s = sub.add_parser("score")
    s.add_argument("folders", nargs="+")
    s.add_argument("--n", type=int, default=200)
    e = sub.add_parser("export")
    e.add_argument("preset")
    e.add_argument("ckpt")
    e.add_argument("target")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(export(args.preset, args.ckpt, args.target))
        return
    if args.command == "train":
        train(args.variant, args.out, args.steps, args.batch)
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for folder in args.folders:
        print(json.dumps(score_folder(folder, args.n)), flush=True)


if __name__ == "__main__":
    main()
