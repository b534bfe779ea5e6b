"""VAE family: a convolutional VAE trained here on the Olivetti faces, plus hub AutoencoderKLs."""

from __future__ import annotations

from playground.core import registry

TITLE = "VAE faces"
ABOUT = """
A variational autoencoder (VAE) squeezes each face into a short code (32 numbers) and learns to
rebuild the face from it; because the codes are kept close to a simple bell-curve "prior", you
can walk smoothly from one face's code to another's, or draw new codes and decode new faces. Our
VAE learned 64×64 grey faces from the Olivetti / AT&T faces (40 people × 10; credit: AT&T
Laboratories Cambridge), with 5 people held out to measure how well it generalises. Where the
internet is available, the Stable Diffusion VAE (`stabilityai/sd-vae-ft-mse`, Stability AI /
CompVis) can be used for colour photos at higher resolution through the same buttons, as can our
own VAE pushed to the hub.
"""
FAMILY = "vae"
SHIPPED = "vae-olivetti"
SD_VAE = "stabilityai/sd-vae-ft-mse"


def register_models() -> None:
    registry.register_weights(FAMILY, SHIPPED, "convolutional VAE trained here on the Olivetti "
                              "faces (64×64 grey, 32-d latent)", kind="conv")
    registry.register_hub(FAMILY, SD_VAE, "Stable Diffusion VAE (diffusers AutoencoderKL; "
                          "colour, 256 px here; needs the internet)", kind="autoencoderkl")


def preload() -> None:
    """Load the shipped VAE through the normal cached loader (the app calls this at start-up on
    ZeroGPU, so the model already sits on the GPU when the first request comes)."""
    from playground.vae.codec import load_codec

    if SHIPPED not in registry.choices(FAMILY):
        register_models()
    load_codec(SHIPPED)
