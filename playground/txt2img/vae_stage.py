"""Stages 1 and 1b of ``train.py``: the AutoencoderKL, then (optionally) its decoder alone.

Stage 1 trains the VAE (reconstruction with object pixels weighted, + a small KL term, + for the
second model a locality term: ``latent_spread``, the share of the latent's departure from its
plain background's latent that lies away from the objects) and saves
it to ``<out>-vae``; stage 1b fine-tunes its decoder into ``<out>-vae-decoder`` (encoder frozen,
so the latents the UNet learns from do not change). ``cfg`` is a ``train.TrainConfig``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from playground.core.schedules import cosine, tail_cosine
from playground.core.training import (
    LoopConfig,
    StepContext,
    TrainTask,
    checkpoint_step,
    train_loop,
)
from playground.txt2img import model as M
from playground.txt2img.shapes import background_colour, object_weights, random_batches

# (latents (B, C, s, s), images (B, 3, S, S), generator) -> latents the decoder learns from
LatentTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def weighted_mse(recon: torch.Tensor, x: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Reconstruction MSE with object pixels weighted ``object_weight`` times the background."""
    weight = object_weights(x, object_weight)  # (B, 1, S, S)
    return ((recon - x) ** 2 * weight).mean() / weight.mean()


def object_footprint(images: torch.Tensor, latent_size: int, grow: int = 1) -> torch.Tensor:
    """(B, 1, s, s) 1 on the latent pixels that cover an object pixel of ``images``
    (B, 3, S, S), grown by ``grow`` latent pixels each way; 0 elsewhere."""
    on_object = (object_weights(images, 2.0) > 1).float()
    footprint = F.adaptive_max_pool2d(on_object, latent_size)
    return F.max_pool2d(footprint, 2 * grow + 1, stride=1, padding=grow) if grow else footprint


def latent_spread(z: torch.Tensor, z_background: torch.Tensor,
                  footprint: torch.Tensor) -> torch.Tensor:
    """(B,) share of the latent's squared departure from its plain background's latent,
    ``|z - z_background|²`` summed over channels, that lies outside ``footprint`` (B, 1, s, s).
    0 for a latent that keeps each object where it is; the shipped VAE's "tail" raises it."""
    energy = ((z - z_background) ** 2).sum(1, keepdim=True)  # (B, 1, s, s)
    return (energy * (1 - footprint)).sum((1, 2, 3)) / (energy.sum((1, 2, 3)) + 1e-6)


def locality_loss(vae, x: torch.Tensor, z_mean: torch.Tensor) -> torch.Tensor:
    """Mean ``latent_spread`` of the posterior means ``z_mean`` of ``x`` against the posterior
    means of plain images of each one's background colour (gradients reach both encodings)."""
    plain = background_colour(x).expand_as(x)
    z_plain = vae.encode(plain).latent_dist.mean
    return latent_spread(z_mean, z_plain, object_footprint(x, z_mean.shape[-1])).mean()


def vae_lr_factor(step: int, cfg) -> float:
    """1, then a cosine to 0 over the last ``vae_decay_steps``."""
    return tail_cosine(step, cfg.vae_steps, cfg.vae_decay_steps)


def _save_vae(models, folder: Path) -> None:
    models["vae"].save_pretrained(folder, safe_serialization=True)


def vae_task(cfg, images: torch.Tensor, seed: int) -> TrainTask:
    """Stage 1: AutoencoderKL on (N, 3, S, S) images in [-1, 1]."""
    torch.manual_seed(seed)
    vae = M.build_vae(cfg.model)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: vae_lr_factor(s, cfg))

    def step(ctx: StepContext, idx: torch.Tensor) -> dict[str, float]:
        model, acc = ctx.models["vae"], ctx.accelerator
        x = images[idx].to(acc.device)
        post = acc.unwrap_model(model).encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=ctx.generator).to(x)
        recon = acc.unwrap_model(model).decode(z).sample
        mse = weighted_mse(recon, x, cfg.object_weight)
        kl = post.kl().mean() / x[0].numel()
        loss = mse + cfg.kl_weight * kl
        logs = {}
        if cfg.locality_weight:
            spread = locality_loss(acc.unwrap_model(model), x, post.mean)
            loss = loss + cfg.locality_weight * spread
            logs["vae_spread"] = spread.item()
        ctx.optimizers["vae"].zero_grad(set_to_none=True)
        acc.backward(loss)
        ctx.optimizers["vae"].step()
        ctx.schedulers["lr"].step()
        return {"vae_mse": mse.item(), "vae_kl": kl.item(), **logs}

    return TrainTask(models={"vae": vae}, optimizers={"vae": opt}, schedulers={"lr": sched},
                     batches=random_batches(len(images), cfg.vae_batch, seed + 1), step=step,
                     save=_save_vae, summary={"stage": "vae", "config": dataclasses.asdict(cfg)})


def noised_latents(latents: torch.Tensor, max_sigma: float, gen: torch.Generator
                   ) -> torch.Tensor:
    """``latents`` (B, C, s, s) plus Gaussian noise, its scale drawn per image uniformly in
    [0, ``max_sigma``]."""
    sigma = torch.rand(latents.shape[0], 1, 1, 1, generator=gen) * max_sigma
    noise = torch.randn(latents.shape, generator=gen)
    return latents + (sigma * noise).to(latents.device)


def decoder_task(cfg, vae, images: torch.Tensor, latents: torch.Tensor, seed: int, *,
                 latent_transform: LatentTransform | None = None) -> TrainTask:
    """Stage 1b (as SD's "ft-MSE" VAE): the decoder alone learns to draw ``images`` from their
    posterior means ``latents`` (unscaled), LR on a cosine to 0. The encoder is frozen, so the
    UNet's latents do not change and this stage may run before or after the UNet stage.
    With ``cfg.decoder_noise`` the latents are noised (``noised_latents``, scale relative to
    their standard deviation); ``latent_transform`` (research variants, not together with
    ``decoder_noise``) changes each batch's latents instead."""
    if cfg.decoder_noise:
        if latent_transform is not None:
            raise ValueError("decoder_noise and a latent_transform do not combine")
        spread = float(latents.std())

        def latent_transform(z, x, gen):
            return noised_latents(z, cfg.decoder_noise * spread, gen)
    torch.manual_seed(seed)
    vae = copy.deepcopy(vae).requires_grad_(False)
    trained = [vae.decoder, vae.post_quant_conv]
    for module in trained:
        module.requires_grad_(True)
    params = [p for m in trained for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.decoder_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine(s / max(1, cfg.decoder_steps)))

    def step(ctx: StepContext, idx: torch.Tensor) -> dict[str, float]:
        model, acc = ctx.models["vae"], ctx.accelerator
        x, z = images[idx].to(acc.device), latents[idx].to(acc.device)
        if latent_transform is not None:
            z = latent_transform(z, x, ctx.generator)
        recon = acc.unwrap_model(model).decode(z).sample
        mse = weighted_mse(recon, x, cfg.object_weight)
        ctx.optimizers["vae"].zero_grad(set_to_none=True)
        acc.backward(mse)
        ctx.optimizers["vae"].step()
        ctx.schedulers["lr"].step()
        return {"decoder_mse": mse.item()}

    return TrainTask(models={"vae": vae}, optimizers={"vae": opt}, schedulers={"lr": sched},
                     batches=random_batches(len(images), cfg.vae_batch, seed + 3), step=step,
                     save=_save_vae,
                     summary={"stage": "decoder", "config": dataclasses.asdict(cfg)})


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Posterior means of ``images`` (N, 3, S, S) -> (N, C, S/f, S/f), unscaled."""
    vae.eval()
    return torch.cat([vae.encode(images[i:i + batch]).latent_dist.mean
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def set_scaling_factor(vae, latents: torch.Tensor) -> float:
    """SD's trick: scale latents to unit variance; stored in the VAE config for the pipeline."""
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


def train_vae_stage(cfg, loop: LoopConfig, images: torch.Tensor, folder: Path):
    """Train the VAE in ``folder`` (continuing its checkpoint if it has fewer than
    ``cfg.vae_steps`` steps; reusing it if done); returns the loaded AutoencoderKL."""
    from diffusers import AutoencoderKL

    done = _steps_done(folder)
    if done < cfg.vae_steps or not (folder / "config.json").exists():
        vae_loop = dataclasses.replace(loop, max_steps=cfg.vae_steps, out_dir=str(folder),
                                       checkpoint_dir=None,
                                       checkpoint_every=loop.checkpoint_every or 100,
                                       resume=done > 0, sample_every=0)
        train_loop(vae_loop, vae_task(cfg, images, loop.seed))
    return AutoencoderKL.from_pretrained(folder)


def _steps_done(folder: Path) -> int:
    """The step of the checkpoint ``<folder>-ckpt`` (0 if none): the VAE stages continue it
    by themselves, without ``--resume`` (which names the UNet stage's checkpoint)."""
    ckpt = Path(f"{folder}-ckpt")
    return checkpoint_step(ckpt) if (ckpt / "progress.json").exists() else 0


def train_decoder_stage(cfg, loop: LoopConfig, vae, images: torch.Tensor,
                        latents: torch.Tensor, folder: Path):
    """Fine-tune the decoder in ``folder`` (reused if already done); returns the new VAE."""
    from diffusers import AutoencoderKL

    if not (folder / "config.json").exists():
        dec_loop = dataclasses.replace(loop, max_steps=cfg.decoder_steps, out_dir=str(folder),
                                       checkpoint_dir=None, checkpoint_every=loop.checkpoint_every,
                                       resume=_steps_done(folder) > 0, sample_every=0)
        train_loop(dec_loop, decoder_task(cfg, vae, images, latents, loop.seed))
    return AutoencoderKL.from_pretrained(folder)


def vae_stages(cfg, loop: LoopConfig, images: torch.Tensor):
    """Stages 1 and 1b; returns the VAE and the scaled latents of ``images``."""
    vae = train_vae_stage(cfg, loop, images, Path(f"{loop.out_dir}-vae"))
    latents = encode_latents(vae, images)
    factor = set_scaling_factor(vae, latents)
    vae.save_pretrained(Path(f"{loop.out_dir}-vae"), safe_serialization=True)  # with the factor
    if cfg.decoder_steps:
        vae = train_decoder_stage(cfg, loop, vae, images, latents,
                                  Path(f"{loop.out_dir}-vae-decoder"))
    return vae, latents * factor


def pretrained_vae_latents(folder: Path, images: torch.Tensor):
    """The VAE of the pipeline in ``folder`` and the scaled latents of ``images``."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
    return vae, encode_latents(vae, images) * vae.config.scaling_factor
