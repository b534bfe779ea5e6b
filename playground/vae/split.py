"""The VAE's faces: whole people held out for validation, one split for training, the card and
the tab (the held-out faces the tab shows are the people the model never saw).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from playground.core.errors import UserInputError
from playground.data.faces import FaceSet, load_faces, split_by_person
from playground.vae.likelihood import quantize

N_VAL_PERSONS = 5
SPLIT_SEED = 0
SPLIT_NAME = f"split_by_person(n_val_persons={N_VAL_PERSONS}, seed={SPLIT_SEED})"


@dataclass
class FaceSplit:
    """Training and held-out faces as tensors (N, 1, 64, 64) on the 8-bit grid."""

    train: torch.Tensor
    val: torch.Tensor
    held_out_persons: list[int] = field(default_factory=list)


def faces_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 64, 64) floats in [0, 1] → (N, 1, 64, 64) on the 8-bit grid."""
    return quantize(torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None])


def split_faces(faces: FaceSet) -> tuple[FaceSet, FaceSet]:
    """(training people, held-out people): the split every VAE part uses."""
    return split_by_person(faces, N_VAL_PERSONS, SPLIT_SEED)


@lru_cache(maxsize=2)
def cached_split(source: str) -> tuple[FaceSet, FaceSet]:
    """``split_faces`` of the faces at ``source``, read once per source (for requests)."""
    return split_faces(load_faces(source))


def load_split(data: str | None) -> FaceSplit:
    """Read ``data`` (.npz/.mat/image folder; None = scikit-learn's Olivetti) and split it."""
    try:
        faces = load_faces(data)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"Could not read face data {data!r}: {exc}") from exc
    if faces.images.shape[1:] != (64, 64):
        raise UserInputError(f"Faces must be 64×64, got {faces.images.shape[1:]}.")
    train, val = split_faces(faces)
    if len(val) == 0 or len(train) == 0:  # no person labels: everything trains
        return FaceSplit(faces_to_tensor(faces.images), faces_to_tensor(faces.images[:0]))
    held = sorted(int(p) for p in np.unique(val.persons))
    return FaceSplit(faces_to_tensor(train.images), faces_to_tensor(val.images), held)
