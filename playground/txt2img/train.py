"""Train our Stable Diffusion on the shapes dataset, in stages on the shared loop.

Stage 1 trains the AutoencoderKL and stage 1b fine-tunes its decoder (``vae_stage.py``);
stage 2 (``build_task``) encodes the images to latents once, then trains the UNet and the CLIP
text encoder together on v-prediction (or ε) with Min-SNR weighting (10 % empty captions, for
classifier-free guidance), keeping EMA copies of both. The artefact is a full
``StableDiffusionPipeline`` folder. The noise maths is ``diffusion.py``'s.

The presets (``config.py``) are the chain that produced ``weights/txt2img-shapes`` (its model
card has the commands): `python -m playground.train txt2img --preset shapes --out runs/t2i-v2
--checkpoint-every 200`, then `--preset shapes-refine --out runs/t2i-r1` (a second pass from
that run), `python -m playground.txt2img.emphasis runs/t2i-r1 runs/t2i-amp15 --alpha 15` (a text
encoder that makes the corner words loud), `--preset shapes-corners-warmup --out runs/t2i-pa`,
`--preset shapes-corners --out runs/t2i-pb` and `--preset shapes-detail --out runs/t2i-d1`; ship
the last ``--out`` folder (or `python -m playground.txt2img.train export PRESET RUN_OUT TARGET`
for the latest checkpoint of a run still going). Presets and switches that were tried and not
shipped live in ``research/txt2img/``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from playground.core.ema import update_ema
from playground.core.errors import UserInputError
from playground.core.schedules import tail_cosine
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask, train_loop
from playground.txt2img import diffusion
from playground.txt2img import model as M
from playground.txt2img.config import (  # noqa: F401  (the presets' names, re-exported)
    DEFAULT_PRESET,
    PRESETS,
    SCENE_FILTERS,
    TrainConfig,
    check_config,
    resolve_config,
    shapes2_model,
    shapes_model,
)
from playground.txt2img.pipelines import load_initial_weights
from playground.txt2img.shapes import (
    balanced_batches,
    images_to_tensor,
    latent_object_weights,
    make_dataset,
    random_batches,
    resize_images,
)
from playground.txt2img.vae_stage import pretrained_vae_latents, vae_stages

UNET_MODELS = ("unet", "text_encoder", "ema_unet", "ema_text_encoder")  # build_task's order


def unet_lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, constant, then the tail cosine (``unet_decay_steps``)."""
    warm = min(1.0, (step + 1) / cfg.warmup)
    return warm * tail_cosine(step, cfg.unet_steps, cfg.unet_decay_steps)


def sample_timesteps(n: int, total: int, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Uniform training timesteps, except a ``timestep_bias_p`` share from the noisiest range."""
    t = torch.randint(0, total, (n,), generator=gen)
    if cfg.timestep_bias_p > 0:
        late = torch.randint(cfg.timestep_bias_from, total, (n,), generator=gen)
        t = torch.where(torch.rand(n, generator=gen) < cfg.timestep_bias_p, late, t)
    return t


def pipeline_saver(cfg: TrainConfig, vae, tokenizer) -> Callable[[dict, Path], None]:
    """The stage-2 ``save``: the EMA UNet and EMA text encoder with ``vae`` as a pipeline."""
    def save(models, folder: Path) -> None:
        pipe = M.assemble_pipeline(vae, models["ema_unet"], models["ema_text_encoder"], tokenizer,
                                   M.build_scheduler(cfg.model))
        M.save_pipeline(pipe, folder, fp16=cfg.fp16_artefact)
    return save


# (ctx, batch indices (B,), token ids (B, T) after caption dropout, dropped (B,)) -> (B, T, D)
TextStates = Callable[[StepContext, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def build_task(cfg: TrainConfig, vae, tokenizer, latents: torch.Tensor, captions: list[str],
               seed: int, pixel_weights: torch.Tensor | None = None,
               text_states: TextStates | None = None,
               two_objects: list[bool] | None = None) -> TrainTask:
    """Stage 2: UNet + text encoder on scaled latents (N, C, s, s) with their captions;
    ``pixel_weights`` (N, 1, s, s) weight the loss per latent pixel (None = uniform);
    ``text_states`` replaces the text encoder call (research variants; None = the encoder);
    ``two_objects``: which items are two-object scenes (for ``cfg.two_object_share``)."""
    torch.manual_seed(seed)
    unet = M.build_unet(cfg.model, latents.shape[-1])
    text_encoder = M.build_text_encoder(cfg.model, tokenizer)
    if cfg.init_from:
        load_initial_weights(unet, text_encoder, Path(cfg.init_from))
    text_encoder.requires_grad_(cfg.train_text_encoder)
    ema_unet = copy.deepcopy(unet).requires_grad_(False)
    ema_text = copy.deepcopy(text_encoder).requires_grad_(False)
    scheduler = M.build_scheduler(cfg.model)
    ids = M.caption_ids(tokenizer, captions)  # (N, T)
    empty = M.caption_ids(tokenizer, [""])  # (1, T)
    params = [p for m in (unet, text_encoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: unet_lr_factor(s, cfg))
    v_pred = diffusion.is_v_prediction(scheduler)

    def encode(ctx: StepContext, idx, tokens, drop) -> torch.Tensor:
        return ctx.models["text_encoder"](tokens.to(ctx.accelerator.device))[0]

    def step(ctx: StepContext, idx: torch.Tensor) -> dict[str, float]:
        acc, gen = ctx.accelerator, ctx.generator
        z0 = latents[idx]
        tokens = ids[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < cfg.caption_dropout
        tokens[drop] = empty
        noise = torch.randn(z0.shape, generator=gen)
        t = sample_timesteps(len(idx), len(scheduler.alphas_cumprod), cfg, gen)
        a = diffusion.alpha_bar(scheduler, t)  # (B, 1, 1, 1)
        zt = diffusion.add_noise(z0, noise, a)
        hidden = (text_states or encode)(ctx, idx, tokens, drop)  # (B, T, D)
        pred = ctx.models["unet"](zt.to(acc.device), t.to(acc.device), hidden).sample
        target = diffusion.target(z0, noise, a, v_pred).to(acc.device)
        error = (pred.float() - target) ** 2
        if pixel_weights is None:
            per_sample = error.mean(dim=(1, 2, 3))
        else:  # normalised per image, so the loss keeps its scale
            w = pixel_weights[idx].to(acc.device)
            per_sample = (error * w).mean(dim=(1, 2, 3)) / w.mean(dim=(1, 2, 3))
        weights = diffusion.loss_weights(a.view(-1), cfg.snr_gamma, v_pred).to(acc.device)
        loss = (per_sample * weights).mean()
        ctx.optimizers["main"].zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        ctx.optimizers["main"].step()
        ctx.schedulers["lr"].step()
        decay = min(cfg.ema_decay, (1 + ctx.step) / (10 + ctx.step))
        for name in ("unet", "text_encoder"):  # no buffers to average (position ids are fixed)
            update_ema(acc.unwrap_model(ctx.models[f"ema_{name}"]),
                       acc.unwrap_model(ctx.models[name]), decay, copy_buffers=False)
        return {"loss": loss.item()}

    models = dict(zip(UNET_MODELS, (unet, text_encoder, ema_unet, ema_text), strict=True))
    return TrainTask(models=models, optimizers={"main": opt}, schedulers={"lr": sched},
                     batches=balanced_batches(two_objects, cfg.batch_size, cfg.two_object_share,
                                              seed + 2) if cfg.two_object_share
                     else random_batches(len(latents), cfg.batch_size, seed + 2), step=step,
                     save=pipeline_saver(cfg, vae, tokenizer),
                     summary={"stage": "unet", "config": dataclasses.asdict(cfg),
                              "train_images": len(latents),
                              "what_is_saved": "EMA UNet and EMA text encoder"})


def training_images(cfg: TrainConfig):
    """The shapes dataset of ``cfg``: images (N, 3, S, S) in [-1, 1] and their scenes."""
    raw, scenes = make_dataset(cfg.n_images, cfg.data_seed)
    return resize_images(images_to_tensor(raw), cfg.model.image_size), scenes


def vae_and_latents(cfg: TrainConfig, loop: LoopConfig, images: torch.Tensor):
    """The VAE and scaled latents stage 2 learns from: a fine-tune keeps the VAE (and its
    scaling factor) of the pipeline it starts from; otherwise stages 1 and 1b run."""
    if cfg.init_from:
        return pretrained_vae_latents(Path(cfg.init_from), images)
    return vae_stages(cfg, loop, images)


def unet_scenes(cfg: TrainConfig, scenes) -> list[int]:
    """Indices of the scenes the UNet stage trains on (``cfg.scenes``)."""
    return [i for i, scene in enumerate(scenes) if SCENE_FILTERS[cfg.scenes](scene)]


def unet_pixel_weights(cfg: TrainConfig, images: torch.Tensor, latents: torch.Tensor):
    """``object_loss_weight`` as (N, 1, s, s) loss weights, or None for a plain loss."""
    if cfg.object_loss_weight == 1:
        return None
    return latent_object_weights(images, latents.shape[-1], cfg.object_loss_weight)


def default_out(loop: LoopConfig, preset: str) -> LoopConfig:
    """``loop`` with ``out_dir`` defaulting to runs/txt2img-<preset> (the VAE stage sits beside
    it), as the CLI's default."""
    if loop.out_dir:
        return loop
    return dataclasses.replace(loop, out_dir=f"runs/txt2img-{preset}")


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """`python -m playground.train txt2img ...`: VAE stages (skipped if done), then UNet stage."""
    cfg = resolve_config(preset, overrides)
    if data:
        raise UserInputError("txt2img generates its own shapes data; --data is not used.")
    torch.set_num_threads(max(1, torch.get_num_threads()))  # honours OMP_NUM_THREADS
    loop = default_out(loop, preset)
    images, scenes = training_images(cfg)
    start = time.perf_counter()
    vae, latents = vae_and_latents(cfg, loop, images)
    if not cfg.unet_steps:  # the VAE stages alone (a preset such as shapes2-vae)
        folder = Path(f"{loop.out_dir}-vae-decoder" if cfg.decoder_steps else f"{loop.out_dir}-vae")
        return TrainResult(steps=cfg.vae_steps + cfg.decoder_steps, history=[],
                           wall_time_s=time.perf_counter() - start, cancelled=False,
                           out_dir=folder)
    keep = unet_scenes(cfg, scenes)
    task = build_task(cfg, vae, M.build_tokenizer(cfg.model), latents[keep],
                      [scenes[i].caption for i in keep], loop.seed,
                      pixel_weights=unet_pixel_weights(cfg, images[keep], latents),
                      two_objects=[len(scenes[i].objects) == 2 for i in keep])
    return train_loop(dataclasses.replace(loop, max_steps=loop.max_steps or cfg.unet_steps), task)


def export_checkpoint(preset: str, run_out: str, target: str,
                      overrides: dict | None = None) -> Path:
    """Write the pipeline (EMA UNet + EMA text encoder) of the latest stage-2 checkpoint of the
    run ``--out run_out`` to ``target``: ship the best model so far while training goes on."""
    from diffusers import AutoencoderKL

    from playground.core.training import export_checkpoint as export

    cfg = resolve_config(preset, overrides)
    tuned = Path(f"{run_out}-vae-decoder")  # the decoder-fine-tuned VAE, if that stage ran
    if cfg.init_from:  # a fine-tune keeps the VAE of the pipeline it started from
        vae = AutoencoderKL.from_pretrained(cfg.init_from, subfolder="vae")
    else:
        vae = AutoencoderKL.from_pretrained(tuned if tuned.exists() else f"{run_out}-vae")
    tokenizer = M.build_tokenizer(cfg.model)
    size = cfg.model.image_size // 2 ** (len(vae.config.block_out_channels) - 1)
    models = {"ema_unet": M.build_unet(cfg.model, size),
              "ema_text_encoder": M.build_text_encoder(cfg.model, tokenizer)}
    export(Path(f"{run_out}-ckpt"), models, pipeline_saver(cfg, vae, tokenizer), target,
           names=list(UNET_MODELS), summary={"stage": "unet", "preset": preset})
    return Path(target)


if __name__ == "__main__":  # python -m playground.txt2img.train export PRESET RUN_OUT TARGET
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "export":
        print(export_checkpoint(sys.argv[2], sys.argv[3], sys.argv[4]))
