"""The noise maths of our diffusion model, in one place (as lucidrains' ``GaussianDiffusion``).

The forward process is the variance-preserving one of every SD scheduler:
``z_t = sqrt(a) z0 + sqrt(1 - a) noise`` with ``a`` = alpha bar at step ``t``
(``scheduler.alphas_cumprod[t]``). The UNet predicts either the noise ("epsilon") or the
velocity ``v = sqrt(a) noise - sqrt(1 - a) z0`` ("v_prediction", what our model learns).
Training (``train.build_task``), the step-by-step x0 previews of inference, evaluation and the
research probes all call these functions.
"""

from __future__ import annotations

import torch


def is_v_prediction(scheduler) -> bool:
    """Whether the model behind ``scheduler`` predicts the velocity v (else the noise ε)."""
    return scheduler.config.get("prediction_type") == "v_prediction"


def alpha_bar(scheduler, t) -> torch.Tensor:
    """alpha bar at ``t``: a 0-d tensor for an int, (B, 1, 1, 1) for a (B,) tensor of steps."""
    a = scheduler.alphas_cumprod[t]
    return a.view(-1, 1, 1, 1) if a.dim() else a


def add_noise(z0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(a) z0 + sqrt(1 - a) noise (``a`` broadcasts over z0: (B, 1, 1, 1) or 0-d)."""
    return a.sqrt() * z0 + (1 - a).sqrt() * noise


def target(z0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor,
           v_prediction: bool) -> torch.Tensor:
    """What the UNet learns to predict for z_t: the velocity or the noise."""
    if v_prediction:
        return a.sqrt() * noise - (1 - a).sqrt() * z0
    return noise


def x0_from_prediction(zt: torch.Tensor, prediction: torch.Tensor, a: torch.Tensor,
                       v_prediction: bool) -> torch.Tensor:
    """The clean latents implied by the UNet's ``prediction`` (v or ε) at z_t."""
    if v_prediction:
        return a.sqrt() * zt - (1 - a).sqrt() * prediction
    return (zt - (1 - a).sqrt() * prediction) / a.sqrt()


def training_target(scheduler, z0: torch.Tensor, noise: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
    """``target`` with alpha bar and the prediction type read from ``scheduler``; t: (B,)."""
    return target(z0, noise, alpha_bar(scheduler, t), is_v_prediction(scheduler))


def predicted_x0(scheduler, zt: torch.Tensor, prediction: torch.Tensor, t) -> torch.Tensor:
    """``x0_from_prediction`` with alpha bar at ``t`` (an int or a (B,) tensor) from
    ``scheduler``, in ``zt``'s dtype and device."""
    a = alpha_bar(scheduler, t).to(zt)
    return x0_from_prediction(zt, prediction, a, is_v_prediction(scheduler))


def loss_weights(a: torch.Tensor, gamma: float, v_prediction: bool) -> torch.Tensor:
    """Min-SNR-γ weights per sample (Hang et al. 2023), ``a`` (B,) alpha bars, so the easy
    low-noise steps do not dominate. For ε: min(SNR, γ) / SNR. For v we use
    (min(SNR, γ) + 1) / (SNR + 1): weight 1 (plain v loss) at high noise, where the prompt
    decides layout and background, and the low-noise steps capped like Min-SNR (diffusers'
    min(SNR, γ) / (SNR + 1) would give the zero-SNR step, the one that sets the background, a
    weight of ~0). ``gamma`` 0 = plain MSE (weight 1)."""
    if gamma <= 0:
        return torch.ones_like(a)
    snr = a / (1 - a)
    if v_prediction:
        return (snr.clamp(max=gamma) + 1) / (snr + 1)
    return snr.clamp(max=gamma) / snr
