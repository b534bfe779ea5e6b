"""The pieces of our Stable Diffusion: a small AutoencoderKL, a UNet2DConditionModel, a tiny
CLIPTextModel and a CLIPTokenizer, assembled into a real ``StableDiffusionPipeline``.

Everything is built from configs here (random weights), trained by ``train.py`` and saved with
``save_pretrained``; ``DiffusionPipeline.from_pretrained(folder)`` loads it like a hub model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playground.txt2img.shapes import IMAGE_SIZE, caption_words


@dataclass
class ModelConfig:
    image_size: int = IMAGE_SIZE
    vae_channels: tuple[int, ...] = (32, 64, 64)  # 3 blocks -> latents 4x smaller
    vae_layers: int = 1
    # GroupNorm groups in the VAE; 0 = min(32, vae_channels[0]) (the shipped VAE: 16 groups of
    # one channel at 16 channels, i.e. instance norm, which erases a plain plane's colour)
    vae_norm_groups: int = 0
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    unet_head_dim: int = 32
    cross_attn_blocks: tuple[bool, ...] = (True, True)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 32
    train_timesteps: int = 1000
    # cosine betas reach (almost) zero SNR at the last step, so a sample that starts from pure
    # noise matches training there; v-prediction stays well posed at that noise level. With SD's
    # scaled-linear betas the model learns to read the background from the ~7 % of signal left
    # at t=999, and pure noise at inference has none (Lin et al. 2023, "Common diffusion noise
    # schedules and sample steps are flawed").
    beta_schedule: str = "squaredcos_cap_v2"
    min_alpha_bar: float = 1e-6  # floor of the last alpha bar: keeps Euler's sigma_max at 1000
    prediction_type: str = "v_prediction"


def build_vae(cfg: ModelConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels, layers_per_block=cfg.vae_layers,
        norm_num_groups=cfg.vae_norm_groups or min(32, cfg.vae_channels[0]),
        sample_size=cfg.image_size,
        mid_block_add_attention=False)


def build_unet(cfg: ModelConfig, latent_size: int):
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cfg.cross_attn_blocks)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cfg.cross_attn_blocks))
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels, down_block_types=down, up_block_types=up,
        block_out_channels=cfg.unet_channels, layers_per_block=cfg.unet_layers,
        cross_attention_dim=cfg.text_width, attention_head_dim=cfg.unet_head_dim,
        norm_num_groups=min(32, cfg.unet_channels[0]))


def build_text_encoder(cfg: ModelConfig, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_width,
        intermediate_size=4 * cfg.text_width, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, max_position_embeddings=cfg.max_tokens,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, projection_dim=cfg.text_width)
    return CLIPTextModel(config)


def build_scheduler(cfg: ModelConfig):
    from diffusers import DDIMScheduler

    # "trailing" spacing starts sampling at t=999 whatever the step count; the pipeline swaps
    # in any other sampler with from_config, which keeps these settings
    if cfg.beta_schedule == "scaled_linear":  # SD's own
        options = {"beta_start": 0.00085, "beta_end": 0.012}
    else:  # cosine, with the last alpha bar raised from 2e-9 to min_alpha_bar (fp16-safe)
        options = {"trained_betas": cosine_betas(cfg.train_timesteps, cfg.min_alpha_bar)}
    return DDIMScheduler(num_train_timesteps=cfg.train_timesteps,
                         beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type,
                         timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, **options)


def cosine_betas(steps: int, min_alpha_bar: float) -> list[float]:
    """diffusers' "squaredcos_cap_v2" betas with alpha bar floored at ``min_alpha_bar``."""
    import torch
    from diffusers.schedulers.scheduling_ddim import betas_for_alpha_bar

    alpha_bar = torch.cumprod(1 - betas_for_alpha_bar(steps).double(), 0).clamp(min=min_alpha_bar)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return [round(b, 9) for b in (1 - alpha_bar / previous).tolist()]


def caption_ids(tokenizer, captions: list[str]):
    """Token ids padded (and truncated) as the pipeline pads them: (B, T)."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode_ids(encoder, ids, chunk: int = 256):
    """The text encoder's output for ``ids`` (B, T), in chunks, without gradients: (B, T, D)."""
    import torch

    with torch.no_grad():
        return torch.cat([encoder(ids[i:i + chunk])[0] for i in range(0, len(ids), chunk)])


def build_tokenizer(cfg: ModelConfig):
    from playground.txt2img.tokenizer import build_tokenizer as build

    return build(caption_words(), cfg.max_tokens)


def latent_size(cfg: ModelConfig) -> int:
    return cfg.image_size // 2 ** (len(cfg.vae_channels) - 1)


def assemble_pipeline(vae, unet, text_encoder, tokenizer, scheduler):
    """A ``StableDiffusionPipeline`` (no safety checker: our images are coloured shapes)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def save_pipeline(pipe, folder: Path, *, fp16: bool = False) -> None:
    """``save_pretrained`` (safetensors) plus CLIP's classic vocab.json/merges.txt files."""
    import json

    if fp16:
        import torch
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    tok, folder = pipe.tokenizer, Path(folder) / "tokenizer"
    (folder / "vocab.json").write_text(json.dumps(tok.get_vocab(), ensure_ascii=False))
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_untrained_pipeline(cfg: ModelConfig):
    """All five components from ``cfg`` with random weights (tests, and the trainer's start)."""
    tokenizer = build_tokenizer(cfg)
    return assemble_pipeline(build_vae(cfg), build_unet(cfg, latent_size(cfg)),
                             build_text_encoder(cfg, tokenizer), tokenizer, build_scheduler(cfg))
