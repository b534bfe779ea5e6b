"""Measure a running GAN training from its checkpoints, without touching the run.

`python -m research.gan.watch /work/runs/gan-long-ckpt [--n 200] [--every-s 60]` polls the
checkpoint folder; for every new step it evaluates G and the EMA of G (batch-norm statistics
re-estimated) with ``playground.gan.evaluate``, appends a line to ``<ckpt>-evals/evals.jsonl``,
writes a 16-face grid per generator and keeps both generators' weights
(``<ckpt>-evals/step<N>-<name>/``, HF format) so that any measured step can be shipped.
``--once`` measures the current checkpoint and exits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from playground.core.training import checkpoint_states, checkpoint_step
from playground.gan.train import recalibrate_batch_norm
from research.gan.model import generator_from_state_dict

FACE_ID = Path(__file__).resolve().parents[2] / "weights" / "gan-face-id"
KEYS = ("fd_generated", "fd_ratio", "precision", "recall", "nn_pixel_min",
        "samples_closer_than_same_person_p05", "nn_feature_min")


def measure(ckpt: Path, out: Path, n: int, face_id, faces) -> dict:
    """Evaluate ``g`` and ``g_ema`` of the checkpoint; returns the jsonl row."""
    from playground.gan.evaluate import evaluate_generator
    from playground.gan.inference import generate, grid_image, latent

    step = checkpoint_step(ckpt)
    states = checkpoint_states(ckpt)
    if checkpoint_step(ckpt) != step:
        raise ValueError("a newer checkpoint landed while reading")
    row, t0 = {"step": step}, time.perf_counter()
    for name in ("g", "g_ema"):
        g = generator_from_state_dict(states[name])  # the resize G of (f) too
        if name != "g":
            g = recalibrate_batch_norm(g)
        g.save_pretrained(out / f"step{step:06d}-{name}")
        got = evaluate_generator(g, face_id, faces.images, faces.persons, n=n)
        row.update({f"{name}/{k}": float(got[k]) for k in KEYS})
        z = torch.stack([latent(s, g.nz) for s in range(16)])
        grid_image(generate(g, z), 8).save(out / f"step{step:06d}-{name}.png")
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    with open(out / "evals.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--every-s", type=float, default=60)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)
    from playground.data.faces import faces_source, load_faces
    from playground.gan.faceid import FaceIdNet

    torch.set_num_threads(1)
    face_id = FaceIdNet.from_pretrained(str(FACE_ID)).eval()
    faces = load_faces(faces_source())
    out = args.ckpt.parent / f"{args.ckpt.name}-evals"
    out.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["step"] for line in (out / "evals.jsonl").open()} if (
        out / "evals.jsonl").exists() else set()
    while True:
        try:
            step = checkpoint_step(args.ckpt)
            if step not in done:
                print(json.dumps(measure(args.ckpt, out, args.n, face_id, faces)), flush=True)
                done.add(step)
        except (OSError, KeyError, ValueError) as exc:  # the folder was being replaced
            print(f"retrying: {exc!r}", flush=True)
        if args.once:
            return
        time.sleep(args.every_s)


if __name__ == "__main__":
    main()
