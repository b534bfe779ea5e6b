"""GAN family: a DCGAN we train on the Olivetti faces, plus an optional pretrained colour DCGAN."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from playground.core import registry

TITLE = "GAN faces"
ABOUT = """
A generative adversarial network (GAN) is two networks playing a game: the generator turns
random noise into an image, the discriminator tries to tell its images from real photos, and each
improves by beating the other. Our DCGAN learned 64×64 grey faces from the 400 photos of the
Olivetti / AT&T faces (40 people × 10; credit: AT&T Laboratories Cambridge); each sample is shown
beside its nearest training photo so memorisation is visible. If the optional pip package
`gan-face-generate` is installed, its colour DCGAN (pytorch-tutorial architecture, trained on the
synthetic DigiFace-1M faces by Microsoft; a demo only) is offered too.
"""
FAMILY = "gan"
SHIPPED = "gan-olivetti"
FACE_ID = "gan-face-id"
PRETRAINED_PACKAGE = "gan_face_generate"
PRETRAINED_NAME = "gan-face-generate (DigiFace-1M, colour)"


def pretrained_package_dir() -> Path | None:
    """Folder of the optional pip package holding ``weights.tar``, or None if not installed."""
    spec = importlib.util.find_spec(PRETRAINED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / "weights.tar").is_file() else None


def register_models() -> None:
    registry.register_weights(FAMILY, SHIPPED, "DCGAN trained here on the 400 Olivetti faces "
                              "(64×64 grey)", faces=True)
    folder = pretrained_package_dir()
    if folder is not None:
        registry.register(registry.ModelEntry(
            PRETRAINED_NAME, FAMILY, path=folder, description="pytorch-tutorial DCGAN from the "
            "pip package gan-face-generate 1.1.1, trained on DigiFace-1M (synthetic faces)",
            extra={"faces": False, "tutorial_checkpoint": True}))


def preload() -> None:
    """Load the shipped generator through the normal cached loader (the app calls this at
    start-up on ZeroGPU, so the model already sits on the GPU when the first request comes)."""
    from playground.gan.inference import load_generator

    if SHIPPED not in registry.choices(FAMILY):
        register_models()
    load_generator(SHIPPED)
