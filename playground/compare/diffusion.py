"""The 2-D DDPM (Ho et al., 2020) and its maths: a noise-prediction MLP with a sinusoidal timestep
embedding (diffusers ``ModelMixin``/``ConfigMixin``), trained and sampled with diffusers'
``DDPMScheduler`` (ancestral, every step) and ``DDIMScheduler`` (fast, deterministic), and the
variational bound on -log p(x) that makes its likelihood comparable with the others'.

Timesteps are diffusers' 0-based indices i = 0..T-1 (the paper's t = i + 1); x_i ~
N(sqrt(ᾱ_i) x_0, (1 - ᾱ_i) I). Data are standardised as in ``model.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from playground.compare.model import LOG_2PI, mlp


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (N,) -> (N, dim), as in the Transformer and DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs.to(t.device)[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class DiffusionMLP(ModelMixin, ConfigMixin):
    """ε_θ(x_i, i): an MLP of [u_i, embedding(i), sinusoidal features of each coordinate of u_i]
    -> predicted noise (N, 2). The coordinate features (frequencies up to ``input_scale``, as in
    tiny-diffusion) let a small MLP draw sharp edges such as the checkerboard's; 0 (the default,
    which older saved configs load with) turns them off; the Compare presets use 25.
    """

    @register_to_config
    def __init__(self, width: int = 128, embed_dim: int = 32, num_train_timesteps: int = 100,
                 beta_schedule: str = "linear", shift: tuple = (0.0, 0.0),
                 scale: float = 1.0, target: str = "", beta_start: float = 1e-4,
                 beta_end: float = 0.1, input_scale: float = 0.0) -> None:
        super().__init__()
        n_in = 2 + embed_dim + (2 * embed_dim if input_scale else 0)
        self.net = mlp(n_in, width, 2, depth=3)
        self.register_buffer("shift_", torch.tensor(list(shift), dtype=torch.float32))
        self.register_buffer("scale_", torch.tensor(float(scale), dtype=torch.float32))

    def forward(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dim, scale = self.config.embed_dim, self.config.input_scale
        parts = [u, timestep_embedding(t, dim)]
        if scale:
            parts += [timestep_embedding(u[:, k] * scale, dim) for k in range(2)]
        return self.net(torch.cat(parts, -1))

    def to_u(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift_) / self.scale_

    def to_x(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.scale_ + self.shift_


def make_scheduler(model: DiffusionMLP) -> DDPMScheduler:
    """The DDPM noise schedule the model was trained with; reverse-step variance β_i
    ("fixed_large", as in the variational bound below)."""
    return DDPMScheduler(num_train_timesteps=model.config.num_train_timesteps,
                         beta_schedule=model.config.beta_schedule, clip_sample=False,
                         beta_start=model.config.beta_start, beta_end=model.config.beta_end,
                         prediction_type="epsilon", variance_type="fixed_large")


def diffusion_loss(model, scheduler: DDPMScheduler, u0: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """The simple DDPM loss E_{i, ε} ‖ε - ε_θ(x_i, i)‖² on standardised points (N, 2)."""
    n, device = len(u0), u0.device
    t = torch.randint(scheduler.config.num_train_timesteps, (n,), generator=generator).to(device)
    noise = torch.randn(n, 2, generator=generator).to(device)
    noisy = scheduler.add_noise(u0, noise, t)
    return ((model(noisy, t) - noise) ** 2).sum(-1).mean()


Callback = Callable[[int, torch.Tensor], None]


@torch.no_grad()
def sample(model: DiffusionMLP, n: int, generator: torch.Generator, *, steps: int | None = None,
           ddim: bool = False, on_step: Callback | None = None) -> torch.Tensor:
    """(n, 2) samples in data coordinates: DDPM ancestral sampling over ``steps`` (default all T),
    or DDIM (η = 0) for a fast deterministic path. ``on_step(i, x)`` sees each intermediate x."""
    ddpm = make_scheduler(model)
    scheduler = DDIMScheduler.from_config(ddpm.config) if ddim else ddpm
    scheduler.set_timesteps(steps or model.config.num_train_timesteps)
    device = model.scale_.device
    u = torch.randn(n, 2, generator=generator).to(device)
    for i, t in enumerate(scheduler.timesteps):
        eps = model(u, torch.full((n,), int(t), device=device))
        u = scheduler.step(eps, t, u, generator=generator).prev_sample
        if on_step is not None:
            on_step(i, model.to_x(u))
    return model.to_x(u)


@torch.no_grad()
def variational_bound(model: DiffusionMLP, x: torch.Tensor, generator: torch.Generator
                      ) -> torch.Tensor:
    """-ELBO ≥ -log p_θ(x) per point (N,), nats, in data coordinates (Ho et al. 2020, eq. 5).

    The reverse steps are N(μ_θ(x_i, i), β_i I) ("fixed_large": exact when the data are
    Gaussian, where the bound then equals the entropy). Terms: L_prior = KL(q(x_{T-1}|x_0) ‖
    N(0, I)); for i ≥ 1, KL(N(μ̃_i, β̃_i) ‖ N(μ_θ, β_i)) = w_i ‖ε - ε_θ(x_i, i)‖² + (r - 1 - log r)
    with w_i = β_i / (2 α_i (1 - ᾱ_i)) and r = β̃_i / β_i (2 dims); the decoder
    -log N(x_0; μ_θ, β_0 I) = ‖ε - ε_θ‖² / (2 α_0) + log(2π β_0). One ε per timestep per point;
    every timestep is summed (no sampling of i).
    """
    sched = make_scheduler(model)
    betas, abar = sched.betas.double(), sched.alphas_cumprod.double()
    alphas = 1 - betas
    u0 = model.to_u(x).double().cpu()
    device = model.scale_.device
    total = 0.5 * (abar[-1] * u0**2 + (1 - abar[-1]) - 1 - torch.log(1 - abar[-1])).sum(-1)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    ratio = (1 - abar_prev) / (1 - abar)  # β̃_i / β_i
    weights = betas / (2 * alphas * (1 - abar))
    weights[0] = 1 / (2 * alphas[0])
    for i in range(len(betas)):
        eps = torch.randn(u0.shape, generator=generator, dtype=torch.float64)
        ui = abar[i].sqrt() * u0 + (1 - abar[i]).sqrt() * eps
        pred = model(ui.float().to(device), torch.full((len(u0),), i, device=device))
        total = total + weights[i] * ((eps - pred.double().cpu()) ** 2).sum(-1)
        if i > 0:
            total = total + ratio[i] - 1 - torch.log(ratio[i])
    total = total + LOG_2PI + torch.log(betas[0])  # the decoder's normaliser, 2 dims
    return (total + 2 * model.scale_.double().log().cpu()).float()
