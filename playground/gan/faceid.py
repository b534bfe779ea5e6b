"""A small face-identity CNN trained on Olivetti (40 people): the feature space of our metrics.

Inception weights are not available offline, so the Fréchet distance and precision/recall of
the GAN are measured on the 64-d penultimate features of this classifier instead: a space where
distances mean "how different are these identities/faces", learned from the same 40 people.

`python -m playground.gan.faceid --out weights/gan-face-id` (faces: the bundled
assets/olivetti_faces.npz, or ``--data`` a .npz/.mat file or an image folder)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from playground.gan.augment import augment_real, faces_to_tensor


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(True), nn.MaxPool2d(2)]


class FaceIdNet(nn.Module, PyTorchModelHubMixin, library_name="playground",
                tags=["face-identification", "feature-extractor"]):
    """(B, 1, 64, 64) in [-1, 1] -> logits (B, n_classes); ``features`` gives (B, feature_dim)."""

    def __init__(self, n_classes: int = 40, width: int = 16, feature_dim: int = 64,
                 dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(*_block(1, width), *_block(width, width * 2),
                                  *_block(width * 2, width * 4), *_block(width * 4, width * 8),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width * 8, feature_dim), nn.ReLU(True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def extract_features(model: FaceIdNet, images: torch.Tensor, batch: int = 200) -> np.ndarray:
    """(N, 1, S, S) in [-1, 1] -> (N, feature_dim) float64 features (eval mode)."""
    model.eval()
    parts = [model.features(images[i:i + batch].float()) for i in range(0, len(images), batch)]
    return torch.cat(parts).double().numpy()


def split_photos(persons: np.ndarray, n_val_per_person: int) -> np.ndarray:
    """Boolean mask of validation photos: the last ``n_val_per_person`` of each person."""
    mask = np.zeros(len(persons), dtype=bool)
    for p in np.unique(persons):
        idx = np.flatnonzero(persons == p)
        if n_val_per_person:
            mask[idx[-n_val_per_person:]] = True
    return mask


def train_face_id(images: torch.Tensor, labels: torch.Tensor, epochs: int = 60,
                  seed: int = 0, batch: int = 32, log=print) -> FaceIdNet:
    """Adam + cross-entropy with mirror/shift augmentation; images (N, 1, 64, 64) in [-1, 1]."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FaceIdNet(n_classes=int(labels.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * (
        (len(images) + batch - 1) // batch))
    for epoch in range(epochs):
        model.train()
        order, total = torch.randperm(len(images), generator=gen), 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(augment_real(images[idx], gen, 4)), labels[idx],
                                   label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}: loss {total / len(images):.3f}")
    return model.eval()


@torch.no_grad()
def accuracy(model: FaceIdNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model(images).argmax(1) == labels).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Train the face-identity feature network.")
    parser.add_argument("--data", default=None,
                        help="faces (.npz/.mat/folder); default: the bundled Olivetti faces")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--val-per-person", type=int, default=2)
    args = parser.parse_args(argv)
    from playground.data.faces import faces_source, load_faces

    t0 = time.perf_counter()
    args.data = args.data or str(faces_source())
    faces = load_faces(args.data)
    images, labels = faces_to_tensor(faces.images, 64), torch.from_numpy(faces.persons).long()
    val = torch.from_numpy(split_photos(faces.persons, args.val_per_person))
    model = train_face_id(images[~val], labels[~val], args.epochs)
    report = {"train_photos": int((~val).sum()), "val_photos": int(val.sum()),
              "train_accuracy": accuracy(model, images[~val], labels[~val]),
              "val_accuracy": accuracy(model, images[val], labels[val]) if val.any() else None,
              "epochs": args.epochs, "wall_time_s": round(time.perf_counter() - t0, 1),
              "threads": torch.get_num_threads(), "data": args.data}
    model.save_pretrained(args.out)
    (Path(args.out) / "training_summary.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
