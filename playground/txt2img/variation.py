"""Seed variation, as A1111's "variation seed": image i starts from the slerp of the noise of
``seed + i`` and that of ``variation_seed + i``, by ``strength`` (0 = the seed's image, 1 = the
variation seed's image, in between a nearby image of the same composition family).

The noise is drawn exactly as the pipeline draws it (diffusers' ``randn_tensor``, one CPU
generator per image, in the text encoder's dtype), so strength 0 is bit for bit the plain
image of ``seed``. Ancestral samplers (Euler ancestral) also draw fresh noise at every step: it
comes from the seed's generators, as in A1111, except at strength 1, where the variation
seed's generators take over so that the endpoint is exactly the variation seed's image.
"""

from __future__ import annotations

import torch

from playground.core.errors import check_range
from playground.core.latent import slerp
from playground.core.seeding import MAX_SEED, make_generator


def check_variation(variation_seed, strength) -> tuple[int | None, float]:
    """(variation seed, strength) cleaned; strength 0 (or None) turns variation off."""
    strength = 0.0 if strength in (None, "") else check_range("Variation strength", strength,
                                                              0.0, 1.0)
    if not strength:
        return None, 0.0
    return check_range("Variation seed", variation_seed, 0, MAX_SEED, integer=True), strength


def initial_noise(pipe, seed: int, n_images: int, width: int, height: int):
    """(noise (n, C, h, w) as the pipeline would draw it for ``seed``, the generators after
    drawing it). ``pipe.prepare_latents`` draws ``randn_tensor(shape, generators, device,
    prompt dtype)`` then scales by the scheduler's init sigma; we hand it the unscaled noise."""
    from diffusers.utils.torch_utils import randn_tensor

    factor = pipe.vae_scale_factor
    shape = (n_images, pipe.unet.config.in_channels, int(height) // factor, int(width) // factor)
    dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.unet.dtype
    generators = [make_generator(seed + i) for i in range(n_images)]
    return randn_tensor(shape, generator=generators, device=pipe._execution_device,
                        dtype=dtype), generators


def blend(base: torch.Tensor, other: torch.Tensor, strength: float) -> torch.Tensor:
    """Per image, the slerp from ``base`` to ``other`` (B, C, h, w); the endpoints exactly."""
    if strength <= 0:
        return base
    if strength >= 1:
        return other
    flat = [slerp(a.flatten().double(), b.flatten().double(), strength)
            for a, b in zip(base, other, strict=True)]
    return torch.stack(flat).view_as(base).to(base.dtype)


def variation_noise(variation_seed: int, strength: float):
    """An ``inference.Extras.noise`` function: the seed's noise blended with the variation
    seed's by ``strength``."""
    def noise(pipe, seed, n_images, width, height):
        base, generators = initial_noise(pipe, seed, n_images, width, height)
        other, other_generators = initial_noise(pipe, variation_seed, n_images, width, height)
        return (blend(base, other, strength),
                other_generators if strength >= 1 else generators)
    return noise
