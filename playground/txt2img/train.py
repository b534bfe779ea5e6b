"""Train our Stable Diffusion on the shapes dataset, in stages on the shared loop.

Stage 1 trains the AutoencoderKL and stage 1b fine-tunes its decoder (``vae_stage.py``);
stage 2 (``build_task``) encodes the images to latents once, then trains the UNet and the CLIP
text encoder together on v-prediction (or ε) with Min-SNR weighting (10 % empty captions, for
classifier-free guidance), keeping EMA copies of both. The artefact is a full
``StableDiffusionPipeline`` folder. The noise maths is ``diffusion.py``'s.

The presets are the chain that produced ``weights/txt2img-shapes`` (its model card has the
commands): `python -m playground.train txt2img --preset shapes --out runs/t2i-v2
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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from playground.core.config import resolve_preset
from playground.core.ema import update_ema
from playground.core.errors import UserInputError, check_range
from playground.core.schedules import tail_cosine
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask, train_loop
from playground.txt2img import diffusion
from playground.txt2img import model as M
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


@dataclass
class TrainConfig:
    model: M.ModelConfig = field(default_factory=M.ModelConfig)
    n_images: int = 10000
    data_seed: int = 0
    vae_steps: int = 500
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_decay_steps: int = 0  # the last N VAE steps lower the LR to 0 along a cosine
    decoder_steps: int = 0  # then fine-tune the decoder alone (encoder, so latents, frozen)
    decoder_lr: float = 3e-4
    # > 0: the decoder stage decodes latents with Gaussian noise of up to this many times the
    # latents' standard deviation (vae_stage.noised_latents) and learns the clean image: a
    # decoder that does not turn a UNet's small latent errors into mottled backgrounds
    decoder_noise: float = 0.0
    kl_weight: float = 1e-6
    object_weight: float = 10.0  # reconstruction weight of object pixels vs background pixels
    # weight of the VAE's locality term (vae_stage.latent_spread: the share of the latent's
    # departure from its plain background's latent outside the objects' footprint); 0 = off
    locality_weight: float = 0.0
    unet_steps: int = 1500  # 0 = the VAE stages alone (train_cli stops after them)
    unet_decay_steps: int = 0  # the last N UNet steps lower the LR to 0 along a cosine
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 50
    caption_dropout: float = 0.1
    ema_decay: float = 0.995
    snr_gamma: float = 5.0  # Min-SNR-γ loss weighting (Hang et al. 2023); 0 = plain MSE
    fp16_artefact: bool = False  # main weights fp32: they load like a hub model, no dtype
    # fine-tuning: start the UNet stage from a pipeline folder we trained (its VAE, UNet and
    # text encoder; no VAE stages)
    init_from: str = ""
    train_text_encoder: bool = True  # False: only the UNet learns (the encoder is frozen)
    # timestep bias (as diffusers' SDXL script's "later"): this share of each batch draws t
    # from [timestep_bias_from, T), the noisiest steps, where sampling decides the layout
    timestep_bias_p: float = 0.0
    timestep_bias_from: int = 850
    # which training scenes the UNet stage sees (the VAE stages see them all): "all", or
    # "one-object" (a curriculum phase that isolates where one object goes from two-object
    # binding)
    scenes: str = "all"
    # weight of the latent pixels under an object in the UNet loss (1 = plain loss): a small
    # star covers 25 of the 1024 latent pixels, so its outline barely moves an unweighted loss
    object_loss_weight: float = 1.0
    # share of two-object scenes in each UNet batch (0 = as the data comes, ~35 %): binding two
    # objects' words to their places is the hard part (the first model: 14 % of held-out pairs)
    two_object_share: float = 0.0


def shapes_model() -> M.ModelConfig:
    """The shipped model's architecture (64 px, 32x32x4 latents, cross-attention at 16x16 and
    8x8), a fresh instance per preset."""
    return M.ModelConfig(vae_channels=(16, 32), unet_channels=(32, 64, 64),
                         cross_attn_blocks=(False, True, True))


def shapes2_model() -> M.ModelConfig:
    """The second model (issue 26): the shipped architecture with one GroupNorm group in the
    VAE (16 groups of one channel normalise each channel over the whole image, so a plain
    background's colour is erased and the encoder spreads objects; see research/txt2img/
    LOG-second-model.md, "The VAE")."""
    return dataclasses.replace(shapes_model(), vae_norm_groups=1)


PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(model=M.ModelConfig(image_size=16, vae_channels=(8, 16),
                                            unet_channels=(8, 16), unet_head_dim=8,
                                            cross_attn_blocks=(False, True), text_width=16,
                                            text_layers=1, text_heads=2),
                        n_images=32, vae_steps=3, vae_batch=4, unet_steps=3, batch_size=4,
                        warmup=1, ema_decay=0.9, fp16_artefact=False),
    # steps 1-3 of weights/txt2img-shapes: VAE, decoder fine-tune, UNet + text encoder
    "shapes": TrainConfig(model=shapes_model(),
                          vae_steps=6000, vae_decay_steps=1000, decoder_steps=1000,
                          unet_steps=7600, unet_decay_steps=1600, lr=1e-3, warmup=100,
                          ema_decay=0.998),
    # step 4: a second pass over the `shapes` run (LR back to 3e-4, cosine to 0 over 1000
    # steps; encoder trained too)
    "shapes-refine": TrainConfig(model=shapes_model(),
                                 unet_steps=1200, unet_decay_steps=1000, lr=3e-4, warmup=50,
                                 ema_decay=0.995, init_from="runs/t2i-v2"),
    # steps 5 and 6: the UNet learns against a text encoder whose corner part was made 15x
    # louder (`python -m playground.txt2img.emphasis runs/t2i-r1 runs/t2i-amp15 --alpha 15`),
    # frozen so that training cannot quieten it again. First a short warm-up on one-object
    # scenes at t >= 975, where only the prompt can place the object (out runs/t2i-pa), then a
    # fine-tune on every scene and step (with a 10 % share at t >= 950)
    "shapes-corners-warmup": TrainConfig(model=shapes_model(),
                                         unet_steps=300, lr=1e-3, warmup=20, ema_decay=0.99,
                                         init_from="runs/t2i-amp15", train_text_encoder=False,
                                         timestep_bias_p=1.0, timestep_bias_from=975,
                                         scenes="one-object"),
    "shapes-corners": TrainConfig(model=shapes_model(),
                                  unet_steps=1500, unet_decay_steps=1000, lr=3e-4, warmup=50,
                                  ema_decay=0.995, init_from="runs/t2i-pa",
                                  train_text_encoder=False, timestep_bias_p=0.1,
                                  timestep_bias_from=950),
    # step 7, the UNet shipped: the loss 5x heavier under the objects (small stars and
    # diamonds came out as blobs), on 20k images, the encoder still frozen
    "shapes-detail": TrainConfig(model=shapes_model(), n_images=20000,
                                 unet_steps=2400, unet_decay_steps=1600, lr=3e-4, warmup=50,
                                 ema_decay=0.995, init_from="runs/t2i-pb",
                                 train_text_encoder=False, timestep_bias_p=0.1,
                                 timestep_bias_from=950, object_loss_weight=5.0),
    # the second model's VAE (issue 26), stages 1 and 1b alone (unet_steps=0): one GroupNorm
    # group and the locality term (the VAE ablations in LOG-second-model.md chose both), on
    # 20 000 images; the decoder stage on latents noised up to 0.25 std (without it this
    # exact decoder drew a UNet's small latent errors as mottled backgrounds)
    "shapes2-vae": TrainConfig(model=shapes2_model(), n_images=20000,
                               vae_steps=6000, vae_decay_steps=1000, decoder_steps=1000,
                               decoder_noise=0.25, locality_weight=1.0, unet_steps=0),
    # the second model's UNet, first stage: the shapes schedule on the new VAE's latents (the
    # VAE stages above are reused from the same --out), the loss 5x heavier under the objects
    # from the start, and half of every batch two-object scenes
    "shapes2": TrainConfig(model=shapes2_model(), n_images=20000,
                           vae_steps=6000, vae_decay_steps=1000, decoder_steps=1000,
                           decoder_noise=0.25, locality_weight=1.0, unet_steps=7600,
                           unet_decay_steps=1600, lr=1e-3, warmup=100, ema_decay=0.998,
                           object_loss_weight=5.0, two_object_share=0.5),
}
DEFAULT_PRESET = "shapes"
SCENE_FILTERS = {"all": lambda scene: True,
                 "one-object": lambda scene: len(scene.objects) == 1}


def resolve_config(preset: str, overrides: dict | None = None) -> TrainConfig:
    """``PRESETS[preset]`` with ``overrides``, its values checked (UserInputError if bad)."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="txt2img")
    check_config(cfg)
    return cfg


def check_config(cfg: TrainConfig) -> None:
    """The value checks of every TrainConfig field (research configs call it too)."""
    check_range("vae_decay_steps", cfg.vae_decay_steps, 0, cfg.vae_steps, integer=True)
    check_range("unet_decay_steps", cfg.unet_decay_steps, 0, cfg.unet_steps, integer=True)
    check_range("two_object_share", cfg.two_object_share, 0.0, 1.0)
    check_range("decoder_steps", cfg.decoder_steps, 0, 10**7, integer=True)
    check_range("decoder_noise", cfg.decoder_noise, 0, 10)
    check_range("snr_gamma", cfg.snr_gamma, 0, 1e3)
    check_range("timestep_bias_p", cfg.timestep_bias_p, 0, 1)
    check_range("timestep_bias_from", cfg.timestep_bias_from, 0,
                cfg.model.train_timesteps - 1, integer=True)
    check_range("model.min_alpha_bar", cfg.model.min_alpha_bar, 1e-12, 1e-2)
    check_range("object_loss_weight", cfg.object_loss_weight, 1, 100)
    check_range("locality_weight", cfg.locality_weight, 0, 1e3)
    check_range("model.vae_norm_groups", cfg.model.vae_norm_groups, 0, 32, integer=True)
    groups = cfg.model.vae_norm_groups
    if groups and any(width % groups for width in cfg.model.vae_channels):
        raise UserInputError(f"model.vae_norm_groups must divide every VAE width "
                             f"{tuple(cfg.model.vae_channels)}, got {groups}.")
    if not isinstance(cfg.train_text_encoder, bool):
        raise UserInputError(f"train_text_encoder must be true or false, got "
                             f"{cfg.train_text_encoder!r}.")
    if cfg.init_from and not (Path(cfg.init_from) / "model_index.json").exists():
        raise UserInputError(f"init_from {cfg.init_from!r} is not a pipeline folder (no "
                             "model_index.json); train the `shapes` preset first, or pass "
                             "--set init_from=FOLDER.")
    if cfg.scenes not in SCENE_FILTERS:
        raise UserInputError(f"scenes must be one of {list(SCENE_FILTERS)}, got {cfg.scenes!r}.")
    if cfg.model.prediction_type not in ("epsilon", "v_prediction"):
        raise UserInputError(f"prediction_type must be 'epsilon' or 'v_prediction', got "
                             f"{cfg.model.prediction_type!r}.")


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
