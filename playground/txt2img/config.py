"""The txt2img training settings: ``TrainConfig``, the architectures and the presets of the
chain that produced each shipped model (``train.py`` runs them; ``python -m playground.train
txt2img --preset NAME`` finds them there). In a module of their own because the chain of the
second model adds presets to the first's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from playground.core.config import resolve_preset
from playground.core.errors import UserInputError, check_range
from playground.txt2img import model as M


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
    # the second model's next stages, as the first model's steps 5-6 taught (louder position
    # words, then the UNet learns against that frozen encoder): `python -m
    # playground.txt2img.emphasis runs/t2i2 runs/t2i2-amp15 --alpha 15`, a warm-up on
    # one-object scenes at t >= 975 (out runs/t2i2-pa), then a fine-tune on every scene with
    # the objects weighted and half of each batch two-object scenes (out runs/t2i2-pb)
    "shapes2-corners-warmup": TrainConfig(model=shapes2_model(), n_images=20000,
                                          unet_steps=300, lr=1e-3, warmup=20, ema_decay=0.99,
                                          init_from="runs/t2i2-amp15",
                                          train_text_encoder=False, timestep_bias_p=1.0,
                                          timestep_bias_from=975, scenes="one-object",
                                          object_loss_weight=5.0),
    "shapes2-corners": TrainConfig(model=shapes2_model(), n_images=20000,
                                   unet_steps=1500, unet_decay_steps=1000, lr=3e-4, warmup=50,
                                   ema_decay=0.995, init_from="runs/t2i2-pa",
                                   train_text_encoder=False, timestep_bias_p=0.1,
                                   timestep_bias_from=950, object_loss_weight=5.0,
                                   two_object_share=0.5),
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
