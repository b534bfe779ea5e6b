"""Four of the five 2-D models of the Compare tab, and their maths (the fifth, the DDPM, lives in
``diffusion.py``; the flow is the Flows tab's zuko ``FlowModel``).

Every model works in standardised coordinates u = (x - shift) / scale, fixed from the training
data when the model is built and stored in its config, so one set of learning rates serves every
target and a user's drawing; densities are turned back to x with the Jacobian
log p(x) = log p(u) - 2 log(scale). Each is a ``PyTorchModelHubMixin`` (config.json +
model.safetensors).

- ``GANModel``: generator MLP z -> x and discriminator MLP x -> logit; non-saturating losses.
- ``VAEModel``: Gaussian encoder q(z|x), Gaussian decoder p(x|z) with a learned variance;
  the ELBO and the importance-weighted bound (Burda et al., 2016) on log p(x).
- ``ARModel``: p(x, y) = p(x) · p(y | x), each a mixture of Gaussians (p(y|x)'s parameters
  from an MLP of x): an exact density, sampled one coordinate after the other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_STD = -4.0  # decoder / mixture std >= e^-4 ≈ 0.018 (standardised units): no spikes


def mlp(n_in: int, width: int, n_out: int, depth: int = 2, act=nn.SiLU) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units."""
    layers, size = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(size, width), act()]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, n_out))


class Standardized(nn.Module):
    """The shift/scale every model keeps as buffers (and in its config)."""

    def _init_standardize(self, shift, scale: float) -> None:
        self.register_buffer("shift", torch.tensor(list(shift or (0.0, 0.0)), dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float32))

    def to_u(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def to_x(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.scale + self.shift

    @property
    def log_det_to_u(self) -> torch.Tensor:
        """log|det du/dx| for 2-D points: -2 log(scale)."""
        return -2 * self.scale.log()

    @property
    def device_(self) -> torch.device:
        return self.scale.device


def data_standardization(x: torch.Tensor) -> tuple[list[float], float]:
    """(shift, scale) making (N, 2) points zero-mean with unit overall standard deviation."""
    shift = x.mean(0)
    scale = float((x - shift).pow(2).mean().sqrt().clamp_min(1e-3))
    return [float(v) for v in shift], scale


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last axis."""
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


# --- GAN -----------------------------------------------------------------------------------
class GANModel(Standardized, PyTorchModelHubMixin, library_name="pytorch",
               tags=["gan", "playground", "2d"]):
    """Generator G: z (latent_dim) -> x (2) and discriminator D: x -> logit."""

    def __init__(self, latent_dim: int = 4, width: int = 128, shift=None, scale: float = 1.0,
                 target: str = "") -> None:
        super().__init__()
        self.config = {"latent_dim": latent_dim, "width": width, "shift": list(shift or [0, 0]),
                       "scale": scale, "target": target}
        self.latent_dim = latent_dim
        self.generator = mlp(latent_dim, width, 2, depth=3, act=nn.ReLU)
        self.discriminator = mlp(2, width, 1, depth=3, act=nn.ReLU)
        self._init_standardize(shift, scale)

    def generate_u(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit of 'real' for (N, 2) points in data coordinates; (N,)."""
        return self.discriminator(self.to_u(x)).squeeze(-1)

    def sample(self, n: int, generator: torch.Generator, latent_scale: float = 1.0
               ) -> torch.Tensor:
        """(n, 2) samples; ``latent_scale`` < 1 shrinks z (the 'truncation trick'; near 0 it
        collapses the generator onto a few modes, which the Compare tab shows on purpose)."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device_)
        return self.to_x(self.generator(z * latent_scale))


def discriminator_loss(model: GANModel, u_real: torch.Tensor, u_fake: torch.Tensor
                       ) -> torch.Tensor:
    """Non-saturating GAN (Goodfellow et al., 2014), D's side: softplus(-D(x)) + softplus(D(G(z)))
    on standardised points; the fake points are detached (only D learns from this loss)."""
    return (F.softplus(-model.discriminator(u_real)).mean()
            + F.softplus(model.discriminator(u_fake.detach())).mean())


def generator_loss(model: GANModel, u_fake: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss softplus(-D(G(z))) = -log D(G(z)): strong gradients early on."""
    return F.softplus(-model.discriminator(u_fake)).mean()


# --- VAE -----------------------------------------------------------------------------------
class VAEModel(Standardized, PyTorchModelHubMixin, library_name="pytorch",
               tags=["vae", "playground", "2d"]):
    """q(z|x) = N(mu(x), sigma(x)²), p(z) = N(0, I), p(x|z) = N(m(z), s(z)²)."""

    def __init__(self, latent_dim: int = 2, width: int = 128, shift=None, scale: float = 1.0,
                 target: str = "") -> None:
        super().__init__()
        self.config = {"latent_dim": latent_dim, "width": width, "shift": list(shift or [0, 0]),
                       "scale": scale, "target": target}
        self.latent_dim = latent_dim
        self.encoder = mlp(2, width, 2 * latent_dim, depth=2)
        self.decoder = mlp(latent_dim, width, 4, depth=2)
        with torch.no_grad():  # start with a sharp decoder, so z is used before the KL bites
            self.decoder[-1].bias[2:].fill_(-2.0)
        self._init_standardize(shift, scale)

    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of q(z|u), each (N, latent_dim)."""
        mean, log_std = self.encoder(u).chunk(2, -1)
        return mean, log_std.clamp(-8, 4)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of p(u|z), each (N, 2)."""
        mean, log_std = self.decoder(z).chunk(2, -1)
        return mean, log_std.clamp(MIN_LOG_STD, 2)

    def decoded_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean in data coordinates (the blurry 'average' a VAE returns)."""
        return self.to_x(self.decode(z)[0])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device_)
        mean, log_std = self.decode(z)
        eps = torch.randn(n, 2, generator=generator).to(self.device_)
        return self.to_x(mean + log_std.exp() * eps)


def vae_elbo(model: VAEModel, x: torch.Tensor, eps: torch.Tensor | None = None,
             kl_weight: float = 1.0) -> torch.Tensor:
    """The ELBO E_q[log p(x|z)] - KL(q(z|x) ‖ p(z)) per point (N,), in data coordinates, with one
    reparameterised z (``eps`` (N, latent) or fresh noise). ``kl_weight`` < 1 only while
    training warms up (KL annealing, Bowman et al., 2016, against posterior collapse)."""
    u = model.to_u(x)
    mean, log_std = model.encode(u)
    eps = torch.randn_like(mean) if eps is None else eps
    z = mean + log_std.exp() * eps
    rec = gaussian_log_prob(u, *model.decode(z))
    kl = 0.5 * (mean**2 + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
    return rec - kl_weight * kl + model.log_det_to_u


def vae_iwae(model: VAEModel, x: torch.Tensor, k: int, generator: torch.Generator
             ) -> torch.Tensor:
    """The importance-weighted bound log (1/k) Σ p(x, z_i) / q(z_i|x) per point (N,); it tightens
    towards log p(x) as k grows (k = 1 is the ELBO)."""
    u = model.to_u(x)
    mean, log_std = model.encode(u)  # (N, L)
    eps = torch.randn(k, *mean.shape, generator=generator).to(mean)  # (k, N, L)
    z = mean + log_std.exp() * eps
    log_q = gaussian_log_prob(z, mean, log_std)  # (k, N)
    log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
    dec_mean, dec_log_std = model.decode(z.reshape(-1, model.latent_dim))
    log_px = gaussian_log_prob(u.repeat(k, 1), dec_mean, dec_log_std).reshape(k, -1)
    return torch.logsumexp(log_px + log_pz - log_q, 0) - math.log(k) + model.log_det_to_u


# --- autoregressive ----------------------------------------------------------------------------
class ARModel(Standardized, PyTorchModelHubMixin, library_name="pytorch",
              tags=["autoregressive", "mixture-density", "playground", "2d"]):
    """p(x, y) = p(x) p(y | x): p(x) a learned K-component Gaussian mixture, p(y | x) a
    K-component mixture whose weights, means and stds an MLP computes from x."""

    def __init__(self, components: int = 16, width: int = 128, shift=None, scale: float = 1.0,
                 target: str = "") -> None:
        super().__init__()
        self.config = {"components": components, "width": width,
                       "shift": list(shift or [0, 0]), "scale": scale, "target": target}
        self.components = components
        self.marginal = nn.Parameter(torch.cat([torch.zeros(components),  # logits
                                                torch.linspace(-2, 2, components),  # means
                                                torch.full((components,), -1.0)]))  # log stds
        self.conditional = mlp(1, width, 3 * components, depth=2)
        self._init_standardize(shift, scale)

    def mixture_x(self, n: int = 1) -> tuple[torch.Tensor, ...]:
        logits, mean, log_std = self.marginal.chunk(3)
        return tuple(t.expand(n, -1) for t in (logits, mean, log_std.clamp(MIN_LOG_STD, 2)))

    def mixture_y(self, ux: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits, means, log_stds) of p(u_y | u_x) for (N,) u_x, each (N, K)."""
        logits, mean, log_std = self.conditional(ux[:, None]).chunk(3, -1)
        return logits, mean, log_std.clamp(MIN_LOG_STD, 2)

    def log_prob_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x), log p(y | x)) of (N, 2) points in data coordinates, each (N,)."""
        u = self.to_u(x)
        half_jac = -self.scale.log()  # each coordinate has its own 1/scale
        return (mixture_log_prob(u[:, 0], *self.mixture_x(len(u))) + half_jac,
                mixture_log_prob(u[:, 1], *self.mixture_y(u[:, 0])) + half_jac)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        log_px, log_py = self.log_prob_parts(x)
        return log_px + log_py

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """x first from p(x), then y from p(y | x): the autoregressive order."""
        ux = mixture_sample(*self.mixture_x(n), generator)
        uy = mixture_sample(*self.mixture_y(ux), generator)
        return self.to_x(torch.stack([ux, uy], 1))


def mixture_log_prob(v: torch.Tensor, logits, mean, log_std) -> torch.Tensor:
    """log Σ_k w_k N(v; m_k, s_k²) for (N,) values and (N, K) parameters."""
    comp = -0.5 * ((v[:, None] - mean) / log_std.exp()) ** 2 - log_std - 0.5 * LOG_2PI
    return torch.logsumexp(comp + logits.log_softmax(-1), -1)


def mixture_sample(logits, mean, log_std, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of (N, K) mixture parameters; noise from ``generator`` (CPU)."""
    probs = logits.softmax(-1).detach().cpu()
    k = torch.multinomial(probs, 1, generator=generator).to(mean.device)  # (N, 1)
    eps = torch.randn(len(mean), generator=generator).to(mean.device)
    return mean.gather(1, k)[:, 0] + log_std.gather(1, k)[:, 0].exp() * eps
