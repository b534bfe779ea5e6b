"""Which word drives which pixels: cross-attention maps, as DAAM does (Tang et al. 2023, "What
the DAAM: Interpreting Stable Diffusion Using Cross Attention").

In every cross-attention layer (``attn2``) of the UNet each latent pixel spreads one unit of
attention over the prompt's tokens (a softmax over the tokens, per head). We record those
probabilities through an attention processor on every ``attn2`` while the image is sampled:
the prompt half of the classifier-free-guidance batch, averaged over the heads; each layer's map
(8x8, 16x16 ... latent pixels) is upsampled bilinearly to the latent size, and the maps are
averaged over layers and steps. The result, (tokens, h, w), is in probability units: the share
of attention the average query at a pixel gave each token. A word's map is the sum over its
tokens (a word the tokenizer cuts into pieces, and every place the word appears); it is drawn
over the image upsampled to the image size and normalised to [0, 1] (its minimum to its
maximum: where the word acted least to where it acted most; its share says how much).

The processor leaves the layer's output to the processor it replaces (so the image is exactly
the one Generate gives for the same settings) and computes the probabilities beside it.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from playground.core.errors import UserInputError
from playground.txt2img import drawing

WORD = re.compile(r"\w+")
MAX_WORD_CHARS = 100
STRIP_SIDE = 128  # each word's picture in the strip


def prompt_words(prompt: str) -> list[str]:
    """The words of ``prompt`` (lower case, punctuation left out), in order, repeats kept."""
    return [m.group().lower() for m in WORD.finditer(prompt or "")]


def check_word(word, prompt: str) -> list[str]:
    """The chosen word(s) (one word, or a few of the prompt's words, summed), each a word of
    ``prompt``; a clear error otherwise."""
    if not isinstance(word, str) or not word.strip():
        raise UserInputError("Type a word of the prompt to see where it acts, e.g. 'circle'.")
    if len(word) > MAX_WORD_CHARS:
        raise UserInputError(f"The word is too long ({len(word)} characters).")
    chosen, words = prompt_words(word), prompt_words(prompt)
    if not chosen or any(w not in words for w in chosen):
        listed = ", ".join(dict.fromkeys(words))
        raise UserInputError(f"{word.strip()!r} is not a word of the prompt. Its words: "
                             f"{listed}.")
    return chosen


def token_positions(tokenizer, prompt: str) -> list[tuple[str, list[int]]]:
    """Each word of ``prompt`` (``prompt_words``) with the positions of its tokens in the text
    encoder's input, as the pipeline tokenizes it (position 0: the start token). A token belongs
    to the word its characters overlap (from the tokenizer's offsets; a word cut into pieces has
    several). Words past the tokenizer's length limit (cut off, so without effect) are left out.
    """
    spans = [(m.group().lower(), m.start(), m.end()) for m in WORD.finditer(prompt)]
    try:
        offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError) as exc:
        raise UserInputError(f"This model's tokenizer ({type(tokenizer).__name__}) gives no "
                             "character offsets, so its tokens cannot be mapped back to the "
                             "prompt's words.") from exc
    last = tokenizer.model_max_length - 1  # the end token takes the last place
    words = []
    for word, start, end in spans:
        positions = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        if positions and positions[-1] < last:
            words.append((word, positions))
    return words


def word_tokens(words: list[tuple[str, list[int]]], chosen: list[str]) -> list[int]:
    """The token positions of the chosen words (every occurrence)."""
    return sorted({p for w, positions in words if w in chosen for p in positions})


def cross_attention_layers(pipe) -> dict[str, object]:
    """name -> the UNet's cross-attention modules (``attn2``) that can be recorded; a clear
    error for a pipeline whose attention cannot be hooked."""
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(pipe, "tokenizer", None) is None:
        raise UserInputError(f"This pipeline ({type(pipe).__name__}) has no UNet with a text "
                             "tokenizer, so its cross-attention cannot be hooked.")
    layers = {name: module for name, module in unet.named_modules()
              if name.endswith("attn2") and hasattr(module, "set_processor")}
    usable = {name: m for name, m in layers.items()
              if getattr(m, "to_q", None) is not None and getattr(m, "to_k", None) is not None}
    if not usable:
        raise UserInputError(f"This model's UNet ({type(unet).__name__}) has no cross-attention "
                             "layers (attn2) whose attention processors can be hooked.")
    return usable


class _Recording:
    """The attention processor put on one ``attn2``: the original processor computes the output;
    the recorder gets the layer's inputs to compute the attention probabilities."""

    def __init__(self, original, recorder: AttentionRecorder) -> None:
        self.original, self.recorder = original, recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):
        self.recorder.observe(attn, hidden_states, encoder_hidden_states, temb)
        if temb is not None:
            kwargs["temb"] = temb
        return self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                             attention_mask=attention_mask, **kwargs)


class AttentionRecorder:
    """Collects the mean cross-attention maps of one sampling run (``attached`` around it).

    After the run ``mean_maps()`` is (B, tokens, h, w) at the latent size (h, w), B the images
    of the batch, and ``words`` the prompt's words with their token positions.
    """

    def __init__(self) -> None:
        self.pipe = None
        self.total: torch.Tensor | None = None  # (B, T, h, w) sum over layer calls
        self.calls = 0
        self.words: list[tuple[str, list[int]]] = []
        self.latent_size: tuple[int, int] = (0, 0)

    @contextlib.contextmanager
    def attached(self, pipe, prompt: str, width: int, height: int):
        """Record while inside: our processor on every ``attn2``, the originals put back after."""
        layers = cross_attention_layers(pipe)
        self.pipe, self.words = pipe, token_positions(pipe.tokenizer, prompt)
        factor = pipe.vae_scale_factor
        self.latent_size = (int(height) // factor, int(width) // factor)
        originals = {name: module.processor for name, module in layers.items()}
        try:
            for name, module in layers.items():
                module.set_processor(_Recording(originals[name], self))
            yield self
        finally:
            for name, module in layers.items():
                module.set_processor(originals[name])

    @torch.no_grad()
    def observe(self, attn, hidden_states, context, temb=None) -> None:
        """Add one layer call's attention probabilities (prompt half, mean over heads)."""
        if context is None:  # not cross-attention
            return
        x = hidden_states
        if attn.spatial_norm is not None:
            x = attn.spatial_norm(x, temb)
        if x.ndim == 4:  # (B, C, h, w) -> (B, hw, C)
            x = x.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        first = x.shape[0] // 2 if self.pipe.do_classifier_free_guidance else 0
        x, context = x[first:], context[first:]  # the prompt half of the batch
        query = attn.head_to_batch_dim(attn.to_q(x))
        key = attn.head_to_batch_dim(attn.to_k(context))
        probs = attn.get_attention_scores(query, key, None)  # (B * heads, hw, T)
        probs = probs.float().view(x.shape[0], attn.heads, *probs.shape[1:]).mean(1)
        self.add(probs)

    def add(self, probs: torch.Tensor) -> None:
        """Accumulate (B, hw, T) probabilities, upsampled to the latent size."""
        height, width = self.latent_size
        batch, pixels, tokens = probs.shape
        factor = math.sqrt(height * width / pixels)
        h, w = round(height / factor), round(width / factor)
        if h * w != pixels:
            raise UserInputError(f"A cross-attention layer has {pixels} positions, which does "
                                 f"not tile the {height}x{width} latent; try a square size.")
        maps = probs.transpose(1, 2).reshape(batch, tokens, h, w)
        if (h, w) != (height, width):
            maps = F.interpolate(maps, size=(height, width), mode="bilinear",
                                 align_corners=False)
        self.total = maps if self.total is None else self.total + maps
        self.calls += 1

    def mean_maps(self) -> torch.Tensor:
        """(B, T, h, w): the mean over layers and steps of the heads' mean attention."""
        if self.total is None:
            raise UserInputError("No cross-attention was recorded (the run ended before the "
                                 "first step).")
        return self.total / self.calls


@dataclass
class WordMap:
    """One word's attention over one image."""
    word: str
    tokens: list[int]  # its positions in the text encoder's input
    latent: torch.Tensor  # (h, w) summed token maps, probability units
    image: torch.Tensor  # (H, W) upsampled to the image and stretched to [0, 1], min to max
    share: float  # mean over pixels of ``latent``: the share of attention the word received


def word_map(maps: torch.Tensor, words: list[tuple[str, list[int]]], chosen: list[str],
             size: tuple[int, int]) -> WordMap:
    """The map of the chosen word(s) from ``mean_maps()[i]`` (T, h, w); ``size`` (H, W)."""
    tokens = word_tokens(words, chosen)
    if not tokens:
        raise UserInputError(f"{' '.join(chosen)!r} lies past the {len(maps)} tokens this model "
                             "reads, so it had no effect; shorten the prompt.")
    latent = maps[tokens].sum(0)
    image = F.interpolate(latent[None, None], size=size, mode="bilinear",
                          align_corners=False)[0, 0]
    return WordMap(" ".join(chosen), tokens, latent, drawing.stretch(image),
                   float(latent.mean()))


@dataclass
class AttentionView:
    """``explain``'s result: the image, the chosen word's map over it and every word's."""
    image_path: Path | None  # the generated image (PNG with its record)
    chosen: WordMap
    overlay: Image.Image  # the chosen word's map over the image, at a readable size
    overlay_path: Path
    words: list[WordMap]  # every word of the prompt the model reads, first occurrences, in order
    strip: list[tuple[Path, str]]  # each word's overlay (PNG) and its caption
    record: dict
    notes: list[str] = field(default_factory=list)


def explain(model: str, prompt: str, word: str, negative_prompt: str = "",
            steps: int | None = None, guidance: float | None = None, seed: int = 0,
            scheduler: str = "DDIM", width: int | None = None, height: int | None = None,
            autoguidance: float | None = None, autoguidance_max_t: int | None = None,
            stop: Callable[[], bool] | None = None, out_dir: Path | None = None,
            ) -> AttentionView:
    """Generate one image (as ``inference.generate``, same settings) while recording the UNet's
    cross-attention; returns the map of ``word`` (a word of the prompt, or a few of them,
    summed) and of every word, drawn over the image, each PNG carrying the record."""
    from playground.core import repro
    from playground.txt2img.inference import Extras, check_prompt, generate, output_path
    from playground.txt2img.preview import PREVIEW_SIDE

    clean = check_prompt(prompt)
    chosen = check_word(word, clean)
    recorder = AttentionRecorder()
    result = generate(model, clean, negative_prompt, steps, guidance, seed, scheduler, 1,
                      width, height, show_steps=False, out_dir=out_dir,
                      autoguidance=autoguidance, autoguidance_max_t=autoguidance_max_t,
                      stop=stop, extras=Extras(
                          attach=lambda pipe, w, h: recorder.attached(pipe, clean, w, h),
                          params={"view": "attention", "word": " ".join(chosen)}))
    maps, image = recorder.mean_maps()[0], result.images[0]
    size = (image.height, image.width)
    mine = word_map(maps, recorder.words, chosen, size)
    every = [word_map(maps, recorder.words, [w], size)
             for w in dict.fromkeys(w for w, _ in recorder.words)]

    def save(picture: Image.Image, label: str, stem: str) -> Path:
        record = {**result.record, "params": {**result.record["params"], "word": label}}
        return repro.save_png(picture, record, output_path(stem, out_dir))

    overlay = drawing.heat_overlay(image, mine.latent, PREVIEW_SIDE)
    strip = [(save(drawing.heat_overlay(image, m.latent, STRIP_SIDE), m.word, "attention-word"),
              f"{m.word} · {100 * m.share:.1f}%") for m in every]
    notes = list(result.notes)
    cut = len(set(prompt_words(clean))) - len(every)
    if cut:
        notes.append(f"{cut} word(s) lie past the {len(maps)} tokens this model reads: not "
                     "shown (they had no effect).")
    return AttentionView(result.paths[0] if result.paths else None, mine, overlay,
                         save(overlay, mine.word, "attention"), every, strip, result.record,
                         notes)
