"""Measure a face generator against the Olivetti photos; writes metrics.json beside the model.

`python -m playground.gan.evaluate --model weights/gan-olivetti --face-id weights/gan-face-id
[--figure]` (faces: the bundled assets/olivetti_faces.npz, the same pixels as olivettifaces.mat;
or --data). ``--figure`` also writes the card's samples.png: seeds 0-15 (psi = 1) over the
nearest training photo of each.

What is measured (Inception is not available offline):
- feature space = the 64-d penultimate layer of our face-identity CNN (weights/gan-face-id);
- FD: Fréchet distance of ``n`` generated faces vs each half of the real photos (photos 0-4 and
  5-9 of every person, 200 each), averaged; baseline: FD between those two real halves, i.e. how
  far two sets of photos of the *same 40 people* are from each other; a weak reference: the
  same FD for faces drawn from a Gaussian over 40 PCA coefficients ("eigenfaces");
- precision/recall (k=3) of ``2n`` generated faces vs all 400 photos; baseline: half vs half;
- memorisation: RMS pixel distance (in [0, 1]) of every generated face to its nearest training
  photo, against the distances between two photos of the same person.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from playground.gan.augment import faces_to_tensor
from playground.gan.inference import generate, grid_image, latent
from playground.gan.metrics import (
    frechet_distance,
    nearest,
    pairwise_distances,
    precision_recall,
    rms_distance,
    same_person_distances,
)


def _halves(persons: np.ndarray) -> np.ndarray:
    """True for the first half of each person's photos."""
    mask = np.zeros(len(persons), dtype=bool)
    for p in np.unique(persons):
        idx = np.flatnonzero(persons == p)
        mask[idx[: len(idx) // 2]] = True
    return mask


def pca_gaussian_faces(images: np.ndarray, n: int, components: int = 40, seed: int = 0
                       ) -> np.ndarray:
    """A weak reference generator: a Gaussian over the top PCA coefficients of the photos
    ("eigenfaces"); (n, 64, 64) in [0, 1]."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    mean = flat.mean(0)
    _, sing, vt = np.linalg.svd(flat - mean, full_matrices=False)
    std = sing[:components] / np.sqrt(len(flat) - 1)
    coeffs = np.random.default_rng(seed).normal(size=(n, components)) * std
    return np.clip(mean + coeffs @ vt[:components], 0, 1).reshape(n, *images.shape[1:])


def evaluate_generator(generator, face_id, images: np.ndarray, persons: np.ndarray,
                       n: int = 200, psi: float = 1.0, k: int = 3) -> dict:
    """All metrics for ``generator`` against photos (N, 64, 64) in [0, 1] with person ids."""
    from playground.gan.faceid import extract_features

    real = faces_to_tensor(images, 64)  # (N, 1, 64, 64) in [-1, 1]
    feats = extract_features(face_id, real)
    first = _halves(persons)
    z = torch.stack([latent(s, generator.nz) for s in range(2 * n)])
    fake01 = generate(generator, z, psi)  # (2n, C, S, S) in [0, 1]
    if fake01.shape[1] != 1:
        fake01 = fake01.mean(1, keepdim=True)
    fake_feats = extract_features(face_id, fake01 * 2 - 1)
    a, b = feats[first], feats[~first]
    fd_real = frechet_distance(a, b)
    fd_gen = 0.5 * (frechet_distance(fake_feats[:n], a) + frechet_distance(fake_feats[n:], b))
    pca = faces_to_tensor(pca_gaussian_faces(images, 2 * n).astype(np.float32), 64)
    pca_feats = extract_features(face_id, pca)
    fd_pca = 0.5 * (frechet_distance(pca_feats[:n], a) + frechet_distance(pca_feats[n:], b))
    p_gen, r_gen = precision_recall(feats, fake_feats, k)
    p_real, r_real = precision_recall(a, b, k)
    size = fake01.shape[-1]
    pix = torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=(size, size),
                                          mode="area")[:, 0].numpy() if size != 64 else images
    _, nn_gen = nearest(fake01[:, 0].numpy(), pix, rms_distance)
    same = same_person_distances(pix, persons, rms_distance)
    own = rms_distance(pix, pix)
    np.fill_diagonal(own, np.inf)
    same_feat = same_person_distances(feats, persons, pairwise_distances)
    _, nn_gen_feat = nearest(fake_feats, feats, pairwise_distances)
    return {
        "fd_generated": fd_gen, "fd_real_vs_real": fd_real, "fd_ratio": fd_gen / fd_real,
        "fd_pca_gaussian_reference": fd_pca,
        "precision": p_gen, "recall": r_gen,
        "precision_real_vs_real": p_real, "recall_real_vs_real": r_real,
        "nn_pixel_min": float(nn_gen.min()), "nn_pixel_median": float(np.median(nn_gen)),
        "same_person_pixel_median": float(np.median(same)),
        "same_person_pixel_min": float(same.min()),
        "same_person_pixel_p05": float(np.percentile(same, 5)),
        "real_nn_pixel_median": float(np.median(own.min(1))),
        "samples_closer_than_same_person_median": int((nn_gen < np.median(same)).sum()),
        "samples_closer_than_same_person_p05": int((nn_gen < np.percentile(same, 5)).sum()),
        "nn_feature_min": float(nn_gen_feat.min()),
        "nn_feature_median": float(np.median(nn_gen_feat)),
        "same_person_feature_median": float(np.median(same_feat)),
        "n_generated": 2 * n, "psi": psi, "k": k, "image_size": size,
    }


def card_figure(generator, images: np.ndarray) -> Image.Image:
    """Seeds 0-15 in two rows of 8 (psi = 1), then the nearest photo (RMS pixels) of each;
    shown 2x (nearest neighbour)."""
    z = torch.stack([latent(s, generator.nz) for s in range(16)])
    fake01 = generate(generator, z)
    idx, _ = nearest(fake01[:, 0].numpy(), images, rms_distance)
    photos = torch.from_numpy(images[idx]).float()[:, None]
    grid = grid_image(torch.cat([fake01, photos]), 8)
    return grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="generator folder (HF format)")
    parser.add_argument("--face-id", default="weights/gan-face-id")
    parser.add_argument("--data", default=None,
                        help="faces (.npz/.mat/folder); default: the bundled Olivetti faces")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--figure", action="store_true", help="also write samples.png")
    args = parser.parse_args(argv)
    from playground.data.faces import faces_source, load_faces
    from playground.gan.faceid import FaceIdNet
    from playground.gan.model import Generator

    torch.set_num_threads(1)
    faces = load_faces(args.data or faces_source())
    generator = Generator.from_pretrained(args.model).eval()
    metrics = evaluate_generator(generator, FaceIdNet.from_pretrained(args.face_id).eval(),
                                 faces.images, faces.persons, n=args.n)
    if args.figure:
        card_figure(generator, faces.images).save(Path(args.model) / "samples.png")
    if not args.no_write:
        (Path(args.model) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
