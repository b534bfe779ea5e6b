"""The VAE's loss terms: a discretized logistic likelihood, the Gaussian KL, bits per dimension.

The images are 8-bit: a pixel takes one of 256 grey levels ``k / 255``. The decoder gives a
logistic distribution (mean ``m``, scale ``s``) per pixel and the probability of level ``k`` is
the logistic mass of its bin ``[k - 0.5, k + 0.5] / 255`` (the end bins reach to ±infinity), as
in PixelCNN++ (Salimans et al. 2017). These are true probabilities of the discrete data, so
``-ELBO / (D ln 2)`` is an upper bound on the model's code length in bits per pixel, directly
comparable between models (uniform noise would be 8 bits/dim).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from playground.vae.model import ConvVAE

N_LEVELS = 256
HALF_BIN = 0.5 / (N_LEVELS - 1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Snap [0, 1] values to the 256 grey levels k/255."""
    return torch.round(x.clamp(0, 1) * (N_LEVELS - 1)) / (N_LEVELS - 1)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor,
                                  log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per pixel for x on the grid k/255, in nats; all tensors broadcast alike."""
    inv_s = torch.exp(-log_scale)
    upper = inv_s * (x + HALF_BIN - mean)
    lower = inv_s * (x - HALF_BIN - mean)
    log_cdf_upper = F.logsigmoid(upper)  # log sigma(u): used for the lowest bin
    log_one_minus_cdf_lower = -F.softplus(lower)  # log(1 - sigma(l)): highest bin
    # log(sigma(u) - sigma(l)), stably: sigma(u) - sigma(l) = sigma(u)(1-sigma(l))(1-e^(l-u))
    mid = (F.logsigmoid(upper) - F.softplus(lower)
           + torch.log(-torch.expm1(lower - upper).clamp(max=-1e-12)))
    out = torch.where(x < HALF_BIN, log_cdf_upper, mid)
    return torch.where(x > 1 - HALF_BIN, log_one_minus_cdf_lower, out)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example (nats), summed over latent dims."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


def elbo_terms(x: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-example reconstruction NLL and KL (nats), from ``ConvVAE.forward`` output."""
    nll = -discretized_logistic_log_prob(x, out["mean"], out["log_scale"]).flatten(1).sum(1)
    return {"nll": nll, "kl": gaussian_kl(out["mu"], out["logvar"])}


def bits_per_dim(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Nats per example → bits per pixel."""
    return nats / (dims * math.log(2))


@torch.no_grad()
def evaluate_elbo(model: ConvVAE, x: torch.Tensor, samples: int = 4, seed: int = 0,
                  batch_size: int = 100) -> dict[str, float]:
    """Held-out ELBO (beta = 1) averaged over faces and ``samples`` draws of z (fixed seed).

    Returns:
        ``bits_per_dim`` (-ELBO per pixel in bits), ``nll_bits_per_dim``, ``kl_nats`` (per face)
        and ``mse`` (decoder mean from the posterior mean vs the input, pixels in [0, 1]).
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    nll, kl, mse = 0.0, 0.0, 0.0
    dims = x[0].numel()
    for i in range(0, len(x), batch_size):
        chunk = quantize(x[i:i + batch_size]).to(device)
        for _ in range(samples):
            terms = elbo_terms(chunk, model(chunk, gen))
            nll += terms["nll"].sum().item() / samples
            kl += terms["kl"].sum().item() / samples
        mu, _ = model.encode(chunk)
        mse += ((model.decode(mu) - chunk) ** 2).flatten(1).mean(1).sum().item()
    n = len(x)
    return {"bits_per_dim": bits_per_dim((nll + kl) / n, dims),
            "nll_bits_per_dim": bits_per_dim(nll / n, dims), "kl_nats": kl / n, "mse": mse / n}
