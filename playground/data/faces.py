"""Face images for the VAE and GAN: Olivetti (the bundled .npz, the .mat file or scikit-learn)
or any image folder.

All loaders return float32 arrays in [0, 1] of shape (N, 64, 64) (grey) plus person labels,
so splits can hold out whole persons. The app reads the faces it shows (held-out people, the
nearest training photo) and trains on from ``assets/olivetti_faces.npz`` in the repository, so
a Space needs nothing beside it; ``$PLAYGROUND_FACES`` points elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from playground.core.errors import UserInputError
from playground.core.uploads import load_image

REPO_ROOT = Path(__file__).resolve().parents[2]
FACES_ENV = "PLAYGROUND_FACES"
# Olivetti / AT&T faces, 400 × 64×64 uint8 + person ids (1.4 MB); credit: AT&T Laboratories
# Cambridge; free for research and teaching. Made from olivettifaces.mat by `save_faces_npz`.
BUNDLED_FACES = REPO_ROOT / "assets" / "olivetti_faces.npz"
FACES_CREDIT = "Olivetti faces: AT&T Laboratories Cambridge (free for research and teaching)"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".pgm", ".tif", ".tiff"}


@dataclass
class FaceSet:
    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    persons: np.ndarray  # (N,) int person id (-1 when unknown)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, mask: np.ndarray) -> FaceSet:
        return FaceSet(self.images[mask], self.persons[mask])


def load_olivetti_mat(path: str | Path) -> FaceSet:
    """``olivettifaces.mat``: uint8 (4096, 400); person k = images 10k..10k+9."""
    from scipy.io import loadmat

    faces = loadmat(str(path))["faces"]
    images = faces.T.reshape(400, 64, 64).transpose(0, 2, 1).astype(np.float32) / 255.0
    return FaceSet(np.ascontiguousarray(images), np.repeat(np.arange(40), 10))


def load_faces_npz(path: str | Path) -> FaceSet:
    """The bundled form: ``images`` uint8 (N, H, W) and ``persons`` (N,)."""
    with np.load(str(path)) as data:
        images = data["images"].astype(np.float32) / 255.0
        return FaceSet(np.ascontiguousarray(images), data["persons"].astype(np.int64))


def save_faces_npz(faces: FaceSet, path: str | Path) -> None:
    """Store 8-bit faces compactly (what made ``assets/olivetti_faces.npz`` from the .mat)."""
    images = np.round(faces.images * 255).astype(np.uint8)
    np.savez_compressed(str(path), images=images, persons=faces.persons.astype(np.int64))


def faces_source() -> Path | None:
    """Where the app's faces come from: ``$PLAYGROUND_FACES`` (a .npz, .mat or image folder),
    else the bundled ``assets/olivetti_faces.npz``; None if that is missing too."""
    path = Path(os.environ.get(FACES_ENV) or BUNDLED_FACES)
    return path if path.exists() else None


def load_olivetti_sklearn() -> FaceSet:
    """Same images via scikit-learn (downloads once; needs the internet)."""
    from sklearn.datasets import fetch_olivetti_faces

    bunch = fetch_olivetti_faces()
    return FaceSet(bunch.images.astype(np.float32), bunch.target.astype(np.int64))


def to_face_array(image: Image.Image, size: int = 64) -> np.ndarray:
    """Any PIL image -> grey, centre square crop, ``size``×``size`` float32 in [0, 1]."""
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        if image.mode == "RGBA":  # flatten transparency onto white
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
    grey = ImageOps.fit(image.convert("L"), (size, size), method=Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float32) / 255.0


def load_image_folder(path: str | Path, size: int = 64) -> FaceSet:
    """Every image under ``path``; the sub-folder name (if any) is the person."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images found under {root}")
    names = sorted({p.parent.name for p in files})
    images = [to_face_array(Image.open(p), size) for p in files]
    persons = [names.index(p.parent.name) if p.parent != root else -1 for p in files]
    return FaceSet(np.stack(images), np.asarray(persons))


def load_faces(source: str | Path | None) -> FaceSet:
    """``None`` or "sklearn" -> scikit-learn Olivetti; a .npz or .mat file; or a folder of
    images."""
    if source is None or str(source) == "sklearn":
        return load_olivetti_sklearn()
    path = Path(source)
    if path.suffix == ".npz":
        return load_faces_npz(path)
    if path.suffix == ".mat":
        return load_olivetti_mat(path)
    if path.is_dir():
        return load_image_folder(path)
    raise ValueError(f"face data must be a .npz or .mat file, an image folder or 'sklearn': "
                     f"{source}")


def split_by_person(faces: FaceSet, n_val_persons: int = 5, seed: int = 0
                    ) -> tuple[FaceSet, FaceSet]:
    """Hold out whole persons for validation (random but fixed by ``seed``)."""
    people = np.unique(faces.persons[faces.persons >= 0])
    rng = np.random.default_rng(seed)
    held = rng.choice(people, size=min(n_val_persons, max(len(people) - 1, 0)), replace=False)
    mask = np.isin(faces.persons, held)
    return faces.subset(~mask), faces.subset(mask)


MIN_PHOTO_SIDE = 16  # px; smaller images carry no face


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float images → 8-bit grey (PIL's convert would clip them)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if image.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        return Image.fromarray((arr / top * 255).clip(0, 255).round().astype(np.uint8), "L")
    return image


def read_face_photo(path: str | Path | None, size: int, channels: int) -> np.ndarray:
    """An uploaded photo as a face model sees it (the VAE encodes it, the GAN searches for it).

    ``core.uploads`` checks the file size and the pixel count from the header before anything is
    decoded; then grey or RGB (transparency on white), centre square crop, ``size`` px.

    Returns:
        float32 in [0, 1]: (size, size) for ``channels == 1``, else (size, size, 3).
    """
    image = load_image(path, min_side=MIN_PHOTO_SIDE, what="photo")
    try:
        image = _to_8bit(image)
        if channels == 1:
            return to_face_array(image, size)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                                  and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        image = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError) as exc:
        raise UserInputError(f"The photo could not be converted ({str(exc)[:120]}).") from None
