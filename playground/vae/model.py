"""A small convolutional VAE for 64×64 grey faces (Kingma & Welling 2014).

Encoder: four stride-2 convolutions (64 → 4 px) and a linear layer to the posterior
``q(z|x) = N(mu, diag(exp(logvar)))``. Decoder: the mirror image, ending in two channels per
pixel: the mean and the log-scale of a *discretized logistic* likelihood over the 256 grey
levels (see ``playground.vae.likelihood``), so the ELBO is a real bound on the 8-bit data.

Saved in Hugging Face format through ``huggingface_hub.PyTorchModelHubMixin``
(``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

IMAGE_SIZE = 64
N_DOWN = 4  # 64 → 32 → 16 → 8 → 4


def _widths(base: int, max_width: int) -> list[int]:
    return [min(base * 2**i, max_width) for i in range(N_DOWN)]  # e.g. 32, 64, 128, 128


class ConvVAE(nn.Module, PyTorchModelHubMixin, library_name="playground",
              tags=["vae", "olivetti"]):
    """x (B, 1, 64, 64) in [0, 1] → posterior; z (B, latent_dim) → likelihood parameters."""

    def __init__(self, latent_dim: int = 32, base_width: int = 32, max_width: int = 128,
                 min_log_scale: float = -7.0, per_image_scale: bool = True):
        super().__init__()
        self.latent_dim, self.min_log_scale = latent_dim, min_log_scale
        # per_image_scale: the decoder predicts each pixel's log-scale from z; otherwise one
        # learned log-scale per pixel position, shared by all faces (harder to overfit)
        self.per_image_scale = per_image_scale
        widths = _widths(base_width, max_width)
        layers: list[nn.Module] = []
        in_ch = 1
        for w in widths:
            layers += [nn.Conv2d(in_ch, w, 4, 2, 1), nn.SiLU()]
            in_ch = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.flat = widths[-1] * 4 * 4
        self.to_posterior = nn.Linear(self.flat, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, self.flat)
        layers = []
        rev = widths[::-1]  # 128, 128, 64, 32
        for w_in, w_out in zip(rev, rev[1:] + [rev[-1]], strict=True):
            layers += [nn.SiLU(), nn.ConvTranspose2d(w_in, w_out, 4, 2, 1)]
        out_ch = 2 if per_image_scale else 1  # mean logit (+ log-scale)
        layers += [nn.SiLU(), nn.Conv2d(rev[-1], out_ch, 3, 1, 1)]
        self.decoder = nn.Sequential(*layers)
        self.log_scale = None if per_image_scale else nn.Parameter(
            torch.full((1, 1, IMAGE_SIZE, IMAGE_SIZE), -3.0))
        self.top_width = rev[0]
        self._init_against_collapse()

    @torch.no_grad()
    def _init_against_collapse(self) -> None:
        # Start with a narrow posterior (logvar -6) and a sharp likelihood (scale e^-3): z then
        # carries the face from step one and reconstruction gradients are strong, so the decoder
        # does not settle on "the mean face, ignore z" (posterior collapse) before it learns.
        self.to_posterior.bias[self.latent_dim:].fill_(-6.0)
        if self.per_image_scale:
            self.decoder[-1].bias[1].fill_(-3.0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 64, 64) in [0, 1] → (mu, logvar), each (B, latent_dim)."""
        h = self.encoder(x * 2 - 1)
        mu, logvar = self.to_posterior(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def decode_params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent_dim) → (mean in [0, 1], log-scale), each (B, 1, 64, 64)."""
        h = self.from_latent(z).view(-1, self.top_width, 4, 4)
        out = self.decoder(h)
        mean = torch.sigmoid(out[:, :1])
        raw = out[:, 1:] if self.per_image_scale else self.log_scale.expand_as(mean)
        log_scale = raw.clamp(min=self.min_log_scale)
        return mean, log_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) → the decoder's mean image (B, 1, 64, 64) in [0, 1]."""
        return self.decode_params(z)[0]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Encode, draw z with the reparameterisation trick, decode."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        mean, log_scale = self.decode_params(z)
        return {"mu": mu, "logvar": logvar, "z": z, "mean": mean, "log_scale": log_scale}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) drawn on CPU (so gradients flow to mu, sigma)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float32).to(mu.device, mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
