"""The txt2img presets and switches that were tried and NOT shipped (results in LOG.md).

`python -m research.txt2img.train --preset shapes-swap --out runs/t2i-s1 --checkpoint-every 200`
takes the same flags as `python -m playground.train txt2img`; every product preset is here
too, so a switch below can be tried on top of any of them (``--set shape_swap_p=0.5``).

The switches (fields of ``ResearchConfig`` on top of the product's ``TrainConfig``):
- ``reinit_words`` / ``reinit_scale``: redraw the token embeddings of some words before a
  fine-tune (the position words, preset ``shapes-position``; the corners stayed at chance);
- ``shape_swap_p``: for this share of captions, the token states after one object's shape word
  come from the same caption with another shape (preset ``shapes-swap``; it hurt shapes);
- ``decoder_only`` / ``decoder_tail_p``: fine-tune the decoder of ``init_from``'s VAE alone,
  a share of each batch with the latent "tail" away from the objects rescaled (preset
  ``shapes-decoder-tail``; the ghosts stayed); with the product's ``decoder_noise`` it
  fine-tunes a finished run's decoder on noised latents (LOG-second-model).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from playground.core.config import resolve_preset
from playground.core.errors import UserInputError, check_range
from playground.core.training import LoopConfig, TrainResult, TrainTask, train_loop
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img.shapes import (
    HELD_OUT_PAIRS,
    SHAPES,
    Obj,
    Scene,
    caption_words,
    object_weights,
)
from playground.txt2img.vae_stage import decoder_task, pretrained_vae_latents
from research.configs import with_switches


@dataclass
class ResearchConfig(T.TrainConfig):
    reinit_words: tuple[str, ...] = ()
    reinit_scale: float = 1.0  # their norm, relative to the mean norm of the caption words'
    shape_swap_p: float = 0.0
    decoder_tail_p: float = 0.0
    decoder_only: bool = False


def _research(cfg: T.TrainConfig, **switches) -> ResearchConfig:
    return with_switches(ResearchConfig, cfg, **switches)


def _step7(**changes) -> ResearchConfig:
    """Step 7's settings (preset shapes-detail) from its run, with ``changes``."""
    return _research(dataclasses.replace(T.PRESETS["shapes-detail"], init_from="runs/t2i-d1",
                                         **changes))


PRESETS: dict[str, ResearchConfig] = {
    **{name: _research(cfg) for name, cfg in T.PRESETS.items()},
    # fine-tunes the `shapes` run, whose UNet drew the object in a random corner, with half of
    # each batch from the noisiest steps (t >= 850) and the text encoder frozen; the corner
    # probe stayed at chance through 900 steps (with reinit_words: the LOG's first two rows)
    "shapes-position": _research(T.TrainConfig(
        model=T.shapes_model(), unet_steps=2000, unet_decay_steps=500, lr=1e-3, warmup=50,
        ema_decay=0.998, init_from="runs/t2i-v2", train_text_encoder=False,
        timestep_bias_p=0.5, timestep_bias_from=850)),
    # after step 8: step 7 goes on with the same weighting on 20 000 fresh images (data seed
    # 1); seen shapes improved, held-out colour+shape stayed within noise of step 7
    "shapes-detail2": _step7(data_seed=1, unet_steps=1800, unet_decay_steps=1200),
    # after step 7: half of the captions take the token states after one object's shape word
    # from the caption with another shape; held-out colour+shape 84 -> 61 %, seen 92 -> 74 %
    "shapes-swap": dataclasses.replace(_step7(unet_steps=1200, unet_decay_steps=1000),
                                       shape_swap_p=0.5),
    # after step 9: the decoder of the shipped VAE learns to draw background where the latent
    # holds an object's "tail"; held-out colour+shape on the same latents 96 -> 95 % (n = 200)
    "shapes-decoder-tail": _research(T.TrainConfig(
        model=T.shapes_model(), n_images=20000, decoder_steps=1500, decoder_lr=3e-4,
        init_from="weights/txt2img-shapes"), decoder_only=True, decoder_tail_p=0.5),
    # a bigger model for a CUDA machine: never run
    "shapes-cuda": _research(T.TrainConfig(
        model=M.ModelConfig(vae_channels=(32, 64), unet_channels=(64, 128, 256),
                            cross_attn_blocks=(True, True, True)),
        n_images=50000, vae_steps=4000, vae_batch=64, unet_steps=30000, batch_size=128,
        fp16_artefact=True)),
}
DEFAULT_PRESET = "shapes-swap"


def resolve_config(preset: str, overrides: dict | None = None) -> ResearchConfig:
    cfg = resolve_preset(PRESETS, preset, overrides, family="txt2img research")
    T.check_config(cfg)
    check_range("reinit_scale", cfg.reinit_scale, 1e-3, 1e3)
    check_range("shape_swap_p", cfg.shape_swap_p, 0, 1)
    check_range("decoder_tail_p", cfg.decoder_tail_p, 0, 1)
    if not isinstance(cfg.decoder_only, bool):
        raise UserInputError(f"decoder_only must be true or false, got {cfg.decoder_only!r}.")
    if cfg.decoder_only and not cfg.decoder_steps:
        raise UserInputError("decoder_only needs decoder_steps > 0.")
    if cfg.decoder_tail_p and not cfg.decoder_only:
        raise UserInputError("decoder_tail_p applies to a decoder_only run.")
    if cfg.decoder_tail_p and cfg.decoder_noise:
        raise UserInputError("decoder_tail_p and decoder_noise are separate experiments: set "
                             "one of them.")
    if isinstance(cfg.reinit_words, str) or not all(isinstance(w, str) for w in cfg.reinit_words):
        raise UserInputError("reinit_words must be a list of words, e.g. "
                             "--set 'reinit_words=[\"top\",\"left\"]'.")
    return cfg


# --- reinit_words ------------------------------------------------------------------------------

def word_token(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise UserInputError(f"reinit_words: {word!r} is not one token of the vocabulary.")
    return ids[0]


@torch.no_grad()
def reinit_token_embeddings(text_encoder, tokenizer, words, seed: int,
                            scale: float = 1.0) -> None:
    """Give each of ``words`` a fresh random token embedding, of norm ``scale`` times the mean
    norm of the caption words' embeddings."""
    table = text_encoder.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(seed + 4)
    rows = [word_token(tokenizer, w) for w in words]
    norm = scale * float(table[[word_token(tokenizer, w) for w in caption_words()]]
                         .norm(dim=1).mean())
    for row in rows:
        vector = torch.randn(table.shape[1], generator=gen)
        table[row] = vector / vector.norm() * norm


# --- shape_swap_p ------------------------------------------------------------------------------

def shape_swapped(scene: Scene, rng: random.Random) -> Scene:
    """``scene`` with one object's shape replaced by another (never making a held-out pair)."""
    j = rng.randrange(len(scene.objects))
    obj = scene.objects[j]
    choices = [s for s in SHAPES if s != obj.shape and (obj.colour, s) not in HELD_OUT_PAIRS]
    objects = list(scene.objects)
    objects[j] = Obj(rng.choice(choices), obj.colour, obj.size, obj.position)
    return Scene(tuple(objects), scene.background)


def swap_after_shape(hidden: torch.Tensor, swapped: torch.Tensor, ids: torch.Tensor,
                     swap_ids: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Token states (B, T, D): rows where ``use`` take ``swapped``'s states after the first
    token where ``ids`` and ``swap_ids`` differ (the swapped shape word), ``hidden`` up to it."""
    first = (ids != swap_ids).int().argmax(dim=1)  # (B,)
    after = torch.arange(ids.shape[1]).view(1, -1) > first.view(-1, 1)
    mask = (after & use.view(-1, 1)).unsqueeze(-1).to(hidden.device)
    return torch.where(mask, swapped, hidden)


def swapping_text_states(cfg: ResearchConfig, tokenizer, captions: list[str],
                         swap_captions: list[str]) -> T.TextStates:
    """The stage-2 ``text_states`` of ``shape_swap_p``: the encoder's states, a share of rows
    swapped after the shape word (``swap_captions``: one per caption)."""
    ids, swap_ids = M.caption_ids(tokenizer, captions), M.caption_ids(tokenizer, swap_captions)

    def states(ctx, idx, tokens, drop) -> torch.Tensor:
        device = ctx.accelerator.device
        hidden = ctx.models["text_encoder"](tokens.to(device))[0]  # (B, T, D)
        use = (torch.rand(len(idx), generator=ctx.generator) < cfg.shape_swap_p) & ~drop
        other = swap_ids[idx]
        swapped = ctx.models["text_encoder"](other.to(device))[0]
        return swap_after_shape(hidden, swapped, ids[idx], other, use)
    return states


def build_task(cfg: ResearchConfig, vae, tokenizer, latents: torch.Tensor, captions: list[str],
               seed: int, pixel_weights: torch.Tensor | None = None,
               swap_captions: list[str] | None = None,
               two_objects: list[bool] | None = None) -> TrainTask:
    """The product's stage 2 with the research switches: ``reinit_words`` redrawn in the text
    encoder (and its EMA copy) and, with ``swap_captions``, the shape swap."""
    text_states = None
    if swap_captions and cfg.shape_swap_p > 0:
        text_states = swapping_text_states(cfg, tokenizer, captions, swap_captions)
    task = T.build_task(cfg, vae, tokenizer, latents, captions, seed, pixel_weights,
                        text_states=text_states, two_objects=two_objects)
    if cfg.reinit_words:
        encoder = task.models["text_encoder"]
        reinit_token_embeddings(encoder, tokenizer, cfg.reinit_words, seed, cfg.reinit_scale)
        task.models["ema_text_encoder"].load_state_dict(encoder.state_dict())
    return task


# --- decoder_only / decoder_tail_p -------------------------------------------------------------

def jitter_outside_objects(latents: torch.Tensor, images: torch.Tensor, p: float,
                           gen: torch.Generator, low: float = -0.5,
                           high: float = 1.5) -> torch.Tensor:
    """For a share ``p`` of the images, the latent pixels more than one latent pixel away from
    every object become ``bg + a * (z - bg)``, ``a`` drawn per image in [low, high] and per pixel
    around it (sd 0.3); ``bg`` is the median of the latent's border ring.

    Why: the encoder puts part of an object into a "tail" about 4 latent pixels down-right of it
    (a small star's latent footprint is twice as heavy down-right as up-left), and a pale,
    pill-shaped ghost there joins many missed small objects. Trained on rescaled tails with the
    clean image as target, the decoder should draw background there whatever the latent holds
    (measured: the ghosts stayed; see LOG.md).

    latents (B, C, s, s) unscaled; images (B, 3, S, S) in [-1, 1].
    """
    b = latents.shape[0]
    pick = (torch.rand(b, generator=gen) < p).to(latents.device).view(b, 1, 1, 1)
    factor = images.shape[-1] // latents.shape[-1]
    on_object = F.max_pool2d((object_weights(images, 2.0) > 1).float(), factor)  # (B, 1, s, s)
    core = F.max_pool2d(on_object, 3, stride=1, padding=1) > 0
    ring = torch.cat([latents[..., 0, :], latents[..., -1, :], latents[..., :, 0],
                      latents[..., :, -1]], dim=-1)
    bg = ring.median(dim=-1).values[..., None, None]  # (B, C, 1, 1)
    scale = torch.empty(b, 1, 1, 1).uniform_(low, high, generator=gen)
    scale = scale + 0.3 * torch.randn(on_object.shape, generator=gen)
    jittered = torch.where(core, latents, bg + scale.to(latents.device) * (latents - bg))
    return torch.where(pick, jittered, latents)


def train_decoder_only(cfg: ResearchConfig, loop: LoopConfig, images: torch.Tensor):
    """The decoder of ``init_from``'s VAE, fine-tuned and written to ``--out`` as a VAE folder."""
    if not cfg.init_from:
        raise UserInputError("decoder_only fine-tunes the VAE of a pipeline: pass --set "
                             "init_from=FOLDER.")
    vae, latents = pretrained_vae_latents(Path(cfg.init_from), images)
    dec_loop = dataclasses.replace(loop, max_steps=loop.max_steps or cfg.decoder_steps)
    transform = None
    if cfg.decoder_tail_p:
        def transform(z, x, gen):
            return jitter_outside_objects(z, x, cfg.decoder_tail_p, gen)
    task = decoder_task(cfg, vae, images, latents / vae.config.scaling_factor, loop.seed,
                        latent_transform=transform)
    return train_loop(dec_loop, task)


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """The product's ``train_cli`` with the research switches."""
    cfg = resolve_config(preset, overrides)
    if data:
        raise UserInputError("txt2img generates its own shapes data; --data is not used.")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    loop = T.default_out(loop, preset)
    images, scenes = T.training_images(cfg)
    if cfg.decoder_only:
        return train_decoder_only(cfg, loop, images)
    vae, latents = T.vae_and_latents(cfg, loop, images)
    keep = T.unet_scenes(cfg, scenes)
    swaps = None
    if cfg.shape_swap_p > 0:
        rng = random.Random(cfg.data_seed + 5)
        swaps = [shape_swapped(scenes[i], rng).caption for i in keep]
    task = build_task(cfg, vae, M.build_tokenizer(cfg.model), latents[keep],
                      [scenes[i].caption for i in keep], loop.seed,
                      pixel_weights=T.unet_pixel_weights(cfg, images[keep], latents),
                      swap_captions=swaps, two_objects=[len(scenes[i].objects) == 2 for i in keep])
    return train_loop(dataclasses.replace(loop, max_steps=loop.max_steps or cfg.unet_steps), task)


def main(argv: list[str] | None = None) -> TrainResult:
    """The flags of `python -m playground.train txt2img`, with the research presets."""
    import sys

    from playground.train import main as train_main

    return train_main(["txt2img", *(sys.argv[1:] if argv is None else argv)],
                      module=sys.modules[__name__])


if __name__ == "__main__":
    main()
