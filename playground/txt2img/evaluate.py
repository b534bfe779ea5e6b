"""Adherence of a text-to-image pipeline on prompts with held-out colour+shape pairs.

`python -m playground.txt2img.evaluate weights/txt2img-shapes --n 200` prints the fractions of
images whose colour, shape, size, position and background match the prompt (see adherence.py),
and beside them the picture-quality measures of artefacts.py (background tint, frame, halo,
ghost: their means and the share of images within ``artefacts.THRESHOLDS``).
"""

from __future__ import annotations

import argparse
import json

import torch

from playground.core.seeding import make_generator
from playground.txt2img import (
    SHIPPED_AUTOGUIDANCE,
    SHIPPED_AUTOGUIDANCE_MAX_T,
    SHIPPED_GUIDANCE,
    SHIPPED_STEPS,
    adherence,
    artefacts,
)
from playground.txt2img.shapes import Scene, eval_scenes

EVAL_STEPS = SHIPPED_STEPS
EVAL_GUIDANCE = SHIPPED_GUIDANCE  # the figures in the card are at the app's defaults
EVAL_AUTOGUIDANCE = SHIPPED_AUTOGUIDANCE
EVAL_AUTOGUIDANCE_MAX_T = SHIPPED_AUTOGUIDANCE_MAX_T


@torch.no_grad()
def generate_for(pipe, scenes: list[Scene], *, steps: int = EVAL_STEPS,
                 guidance: float = EVAL_GUIDANCE, seed: int = 0, batch: int = 16,
                 guide=None, autoguidance: float = 0.0,
                 autoguidance_max_t: float = EVAL_AUTOGUIDANCE_MAX_T) -> list:
    """One image per scene (caption as prompt) from ``inference.sample``; image i uses seed + i,
    DDIM sampling; autoguidance when a ``guide`` UNet is given and its weight is not 0."""
    from playground.txt2img.inference import sample, with_scheduler

    pipe = with_scheduler(pipe, "DDIM")
    pipe.set_progress_bar_config(disable=True)
    images = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start:start + batch]
        gens = [make_generator(seed + start + i) for i in range(len(chunk))]
        images += sample(pipe, [s.caption for s in chunk], gens, steps=steps,
                         guidance=guidance, guide=guide, autoguidance=autoguidance,
                         autoguidance_max_t=autoguidance_max_t)
    return images


def eval_sets(n: int, seed: int = 0) -> dict[str, list[Scene]]:
    """Seed set ``seed``'s prompts: ``n`` one-object prompts each holding a held-out
    colour+shape pair, ``n // 2`` one-object prompts of seen combinations, and ``n // 2``
    two-object prompts."""
    return {"held_out": eval_scenes(n, seed=1000 + seed, held_out=True),
            "seen": eval_scenes(n // 2, seed=2000 + seed, held_out=False),
            "two_objects": eval_scenes(n // 2, seed=3000 + seed, held_out=None,
                                       two_objects_p=1.0)}


def score_set(scenes: list[Scene], images: list) -> dict:
    """Adherence fractions and the artefact summary of one set's images."""
    return {"n": len(scenes), **adherence.score(scenes, images),
            "artefacts": artefacts.score(scenes, images).as_dict()}


def evaluate(pipe, n: int = 100, *, seed: int = 0, steps: int = EVAL_STEPS,
             guidance: float = EVAL_GUIDANCE, guide=None, autoguidance: float = 0.0,
             autoguidance_max_t: float = EVAL_AUTOGUIDANCE_MAX_T) -> dict:
    """Scores on seed set ``seed``'s prompts (``eval_sets``)."""
    sets = eval_sets(n, seed)
    autoguidance = autoguidance if guide is not None else 0.0
    out = {"steps": steps, "guidance": guidance, "autoguidance": autoguidance,
           "autoguidance_max_t": autoguidance_max_t, "scheduler": "DDIM", "seed": seed}
    for name, scenes in sets.items():
        if scenes:
            images = generate_for(pipe, scenes, steps=steps, guidance=guidance, seed=seed,
                                  guide=guide, autoguidance=autoguidance,
                                  autoguidance_max_t=autoguidance_max_t)
            out[name] = score_set(scenes, images)
    return out


def main(argv: list[str] | None = None) -> dict:
    from diffusers import DiffusionPipeline

    from playground.txt2img.autoguidance import load_guide

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=EVAL_STEPS)
    parser.add_argument("--guidance", type=float, default=EVAL_GUIDANCE)
    parser.add_argument("--autoguidance", type=float, default=EVAL_AUTOGUIDANCE,
                        help="weight of the folder's guide_unet (0 = off; none there = off)")
    parser.add_argument("--autoguidance-max-t", type=float, default=EVAL_AUTOGUIDANCE_MAX_T,
                        help="autoguidance only at timesteps up to this one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = DiffusionPipeline.from_pretrained(args.folder, torch_dtype=torch.float32)
    guide = load_guide(args.folder)
    result = evaluate(pipe, args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                      guide=guide, autoguidance=args.autoguidance,
                      autoguidance_max_t=args.autoguidance_max_t)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
