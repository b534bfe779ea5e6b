"""Discriminator rejection sampling probe: does keeping the samples D scores highest lift
precision? (Azadi et al. 2019 keep samples by D's score.)

`python -m research.gan.rejection /work/runs/gan-r1bn-ckpt
/work/runs/gan-r1bn-ckpt-evals/step004000-g_ema --n 4000 --keep 400`

Draws ``--n`` faces from the generator (seeds 0..n-1), scores them with the checkpoint's D (in
eval mode, and in train mode over batches of 64 as in training), and prints the card's
precision / recall (k = 3, face-id features) of the ``--keep`` best-scored faces beside the first
``--keep`` seeds, and the correlation between D's score and a face lying inside the photos'
k-NN manifold. Results: LOG.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from playground.core.training import checkpoint_states
from playground.data.faces import faces_source, load_faces
from playground.gan.augment import faces_to_tensor
from playground.gan.faceid import FaceIdNet, extract_features
from playground.gan.inference import generate, latent
from playground.gan.metrics import knn_radii, pairwise_distances, precision_recall
from playground.gan.model import Discriminator, Generator
from research.gan.watch import FACE_ID


@torch.no_grad()
def d_scores(d: Discriminator, images01: torch.Tensor, train_mode: bool) -> np.ndarray:
    """D's logits for faces in [0, 1]; ``train_mode``: batch statistics over batches of 64."""
    d.train(train_mode)
    size = 64 if train_mode else 500
    return torch.cat([d(images01[i:i + size] * 2 - 1)
                      for i in range(0, len(images01), size)]).numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a GAN run's checkpoint folder (holds D)")
    parser.add_argument("generator", help="the generator to sample (HF folder)")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--keep", type=int, default=400)
    parser.add_argument("--ndf", type=int, default=32)
    args = parser.parse_args(argv)
    if not 1 <= args.keep <= args.n:
        parser.error(f"--keep must be between 1 and --n ({args.n}), got {args.keep}")
    torch.set_num_threads(1)
    g = Generator.from_pretrained(args.generator).eval()
    d = Discriminator(ndf=args.ndf, nc=1, image_size=64, spectral_norm=False)  # the BN D
    d.load_state_dict(checkpoint_states(args.ckpt)["d"])
    face_id = FaceIdNet.from_pretrained(FACE_ID).eval()
    real = extract_features(face_id, faces_to_tensor(load_faces(faces_source()).images, 64))
    z = torch.stack([latent(s, g.nz) for s in range(args.n)])
    with torch.no_grad():
        faces = torch.cat([generate(g, z[i:i + 500]) for i in range(0, args.n, 500)])
    feats = extract_features(face_id, faces * 2 - 1)
    inside = (pairwise_distances(feats, real) <= knn_radii(real, 3)[None, :]).any(1)
    out = {"inside_share": float(inside.mean())}
    p, r = precision_recall(real, feats[:args.keep], 3)
    out["first"] = (p, r)
    print(f"first {args.keep} seeds: precision {p:.3f} recall {r:.3f}")
    for name, train_mode in (("eval", False), ("train", True)):
        score = d_scores(d, faces, train_mode)
        best = np.argsort(-score)[:args.keep]
        p, r = precision_recall(real, feats[best], 3)
        corr = float(np.corrcoef(score, inside)[0, 1])
        out[name] = (p, r, corr)
        print(f"best {args.keep} of {args.n} by D ({name}-mode batch norm): precision {p:.3f} "
              f"recall {r:.3f}; corr(D score, inside) {corr:.3f}")
    print(f"share of all {args.n} faces inside the photos' manifold: {inside.mean():.3f}")
    return out


if __name__ == "__main__":
    main()
