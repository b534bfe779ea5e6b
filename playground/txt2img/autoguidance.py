"""Autoguidance: steer a diffusion model away from a weaker version of itself.

Karras et al. 2024, "Guiding a diffusion model with a bad version of itself": the difference
between a model's prediction and that of a less-trained checkpoint of the same model, both given
the prompt, points at what the extra training learnt (for our shapes model: sharp outlines of
small shapes). We add it on top of classifier-free guidance:

    eps = eps(empty) + g * (eps(prompt) - eps(empty)) + w * (eps(prompt) - eps_guide(prompt))

only at timesteps t <= ``max_timestep`` (a guidance interval, as Kynkaanniemi et al. 2024 do for
CFG): the early, noisy steps settle the layout and size, the later ones the outline.

A pipeline folder may hold the weaker UNet in ``guide_unet/`` (diffusers' ``from_pretrained``
ignores folders that ``model_index.json`` does not list, so the pipeline loads as before). The
hook below rewrites the UNet's conditional output, so the unchanged diffusers pipeline call, any
scheduler and the step-by-step recorder all see the autoguided prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch

GUIDE_FOLDER = "guide_unet"


def load_guide(folder, dtype=torch.float32, device="cpu"):
    """The guide UNet stored next to a pipeline, or None when the folder has none."""
    path = Path(folder) / GUIDE_FOLDER
    if not (path / "config.json").exists():
        return None
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype).to(device).eval()


class Autoguidance:
    """A forward hook for ``pipe.unet``. With classifier-free guidance the batch is
    [unconditional; conditional]; the conditional half e_c becomes e_c + (w / g)(e_c - e_b), so
    the pipeline's e_u + g (e_c - e_u) equals the formula above. Without it (g <= 1), every
    prediction becomes e_c + w (e_c - e_b)."""

    def __init__(self, pipe, guide, weight: float, max_timestep: float = 1000.0) -> None:
        self.pipe, self.guide, self.weight = pipe, guide, float(weight)
        self.max_timestep = float(max_timestep)

    def attach(self):
        """Registers the hook; returns the handle (``.remove()`` it after the call)."""
        return self.pipe.unet.register_forward_hook(self.hook, with_kwargs=True)

    @torch.no_grad()
    def hook(self, module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        if float(torch.as_tensor(timestep).flatten()[0]) > self.max_timestep:
            return output  # outside the interval: the plain prediction, no guide call
        hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        eps = output[0] if isinstance(output, tuple) else output.sample
        scale = self.weight
        if self.pipe.do_classifier_free_guidance:
            half = eps.shape[0] // 2
            scale = self.weight / self.pipe.guidance_scale
        else:
            half = 0
        cond = eps[half:]
        guide = self.guide(sample[half:], timestep, encoder_hidden_states=hidden[half:]).sample
        eps = torch.cat([eps[:half], cond + scale * (cond - guide.to(cond.dtype))])
        if isinstance(output, tuple):
            return (eps, *output[1:])
        output.sample = eps
        return output
