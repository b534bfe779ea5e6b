"""GAN metrics in a face-identity feature space and in pixel space.

- Fréchet distance (Heusel et al. 2017) between Gaussians fitted to two feature sets;
- precision / recall on k-NN manifolds (Kynkäänniemi et al. 2019): precision = share of
  generated samples inside the real manifold, recall = share of real photos inside the
  generated manifold (each point's ball has the radius of its k-th nearest neighbour);
- nearest-neighbour distances: how close each sample is to its closest training photo,
  against the typical distance between two photos of the same person.
"""

from __future__ import annotations

import warnings

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between N(mean_a, cov_a) and N(mean_b, cov_b) fitted to rows of ``a`` and ``b``."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # singular products are handled just below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # near-singular product: regularise (as pytorch-fid)
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall with k-NN manifolds; both in [0, 1]."""
    d = pairwise_distances(fake, real)  # (n_fake, n_real)
    precision = float((d <= knn_radii(real, k)[None, :]).any(1).mean())
    recall = float((d.T <= knn_radii(fake, k)[None, :]).any(1).mean())
    return precision, recall


def rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square pixel distance between image sets (N, ...) and (M, ...) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    return pairwise_distances(a, b) / np.sqrt(a.shape[1])


def nearest(samples: np.ndarray, train: np.ndarray, distance=rms_distance
            ) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to each sample's nearest training item."""
    d = distance(samples, train)
    idx = d.argmin(1)
    return idx, d[np.arange(len(samples)), idx]


def same_person_distances(items: np.ndarray, persons: np.ndarray, distance=rms_distance
                          ) -> np.ndarray:
    """Distances between every pair of different photos of the same person."""
    out = []
    for p in np.unique(persons):
        group = items[persons == p]
        d = distance(group, group)
        out.append(d[np.triu_indices(len(group), 1)])
    return np.concatenate(out) if out else np.zeros(0)
