"""One way to draw samples and, where a family has one, its exact density, for all five families
(the panels, the scores, the bench and the tests call these)."""

from __future__ import annotations

import torch

from playground.compare import diffusion

EXACT_DENSITY = ("flow", "ar")  # families whose log q(x) is exact
FAST_DDIM_STEPS = 20  # DDIM steps of the live panels (the scores use full DDPM sampling)


@torch.no_grad()
def draw(family: str, model, n: int, generator: torch.Generator, *, fast: bool = False,
         latent_scale: float = 1.0) -> torch.Tensor:
    """(n, 2) samples of ``family``'s ``model``, noise from ``generator`` (CPU); ``fast`` uses
    DDIM for the diffusion model; ``latent_scale`` shrinks the GAN's z (1 = as trained)."""
    if family == "diffusion":
        if fast:
            steps = min(FAST_DDIM_STEPS, model.config.num_train_timesteps)
            return diffusion.sample(model, n, generator, steps=steps, ddim=True).cpu()
        return diffusion.sample(model, n, generator).cpu()
    if family == "gan":
        return model.sample(n, generator, latent_scale=latent_scale).cpu()
    return model.sample(n, generator).cpu()


@torch.no_grad()
def log_density(family: str, model, x: torch.Tensor, batch: int = 20_000) -> torch.Tensor | None:
    """Exact log q(x) (N,) for the flow and the AR model; None for the others."""
    if family not in EXACT_DENSITY:
        return None
    device = next(model.parameters()).device
    return torch.cat([model.log_prob(x[i:i + batch].to(device)).float().cpu()
                      for i in range(0, len(x), batch)])


def density_grid(family: str, model, resolution: int) -> torch.Tensor | None:
    """log q on the plotting box as (R, R), row 0 at the top; None without an exact density."""
    from playground.data.targets2d import grid_points

    if family not in EXACT_DENSITY:
        return None
    pts, _ = grid_points(resolution)
    return log_density(family, model, pts).reshape(resolution, resolution)
