"""Compare: one 2-D dataset fitted by a GAN, a VAE, a flow, a diffusion model and an
autoregressive model, side by side, scored alike."""

from __future__ import annotations

from playground.core import registry

TITLE = "Compare"
ABOUT = """
The same 2-D data fitted by five families of generative model side by side, for the same number
of steps, and scored alike on held-out points: a GAN (Goodfellow et al., 2014), a VAE (Kingma &
Welling, 2014), a normalizing flow (zuko's neural spline flow), a diffusion model (DDPM, Ho et
al., 2020, with the diffusers schedulers) and an autoregressive mixture-density model. Energy
distance (Székely & Rizzo) compares any sampler with the data; likelihoods are exact, bounded or
absent, and that difference is part of the lesson.
"""
FAMILY = "compare"
FAMILIES = ("gan", "vae", "flow", "diffusion", "ar")  # the tab's panel order
LABELS = {"gan": "GAN", "vae": "VAE", "flow": "Flow", "diffusion": "Diffusion (DDPM)",
          "ar": "Autoregressive"}
SHIPPED_TARGETS = ("8gaussians", "checkerboard", "rings", "moons", "pinwheel", "spirals")


def shipped_name(target: str) -> str:
    return f"compare-{target}"


def register_models() -> None:
    for target in SHIPPED_TARGETS:
        registry.register_weights(FAMILY, shipped_name(target),
                                  f"the five families fitted here to the {target} target",
                                  target=target)
