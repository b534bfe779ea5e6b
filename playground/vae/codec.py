"""One interface over our ConvVAE and diffusers' AutoencoderKL (e.g. a Stable Diffusion VAE).

Which of the two a folder or hub repo holds is read from its ``config.json`` (fetched alone
first for a hub id): diffusers writes ``_class_name: AutoencoderKL``; our ConvVAE's config
(``PyTorchModelHubMixin``) holds its constructor arguments.

Interpolation, reconstruction, sampling and the latent explorer only need: the image size and
channels the model expects, ``encode`` (images → posterior mean and log-variance as flat
vectors) and ``decode`` (flat latents → images in [0, 1]). Latents are scaled so that the prior
is N(0, I) for both: an AutoencoderKL's latents are multiplied by its ``scaling_factor``.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.core import registry
from playground.core.device import get_device
from playground.core.errors import UserInputError

SD_VAE_EXAMPLE = "stabilityai/sd-vae-ft-mse"
KL_SIZE = 256  # px at which an AutoencoderKL is run here (its own sample_size may be larger)


@dataclass
class Codec:
    """A loaded autoencoder behind the common interface."""

    model: torch.nn.Module
    kind: str  # "conv" (ours) or "autoencoderkl" (diffusers)
    size: int  # input side in px
    channels: int  # 1 = grey, 3 = RGB
    latent_shape: tuple[int, ...]
    scaling: float = 1.0

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, S, S) in [0, 1] → (mu, logvar), each (B, latent_dim), prior N(0, I)."""
        x = x.to(self.device, self.dtype)
        if self.kind == "conv":
            mu, logvar = self.model.encode(x)
        else:
            dist = self.model.encode(x * 2 - 1).latent_dist
            mu = dist.mean * self.scaling
            logvar = dist.logvar + 2 * math.log(self.scaling)
        return mu.flatten(1).float().cpu(), logvar.flatten(1).float().cpu()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """z (B, latent_dim) → images (B, C, S, S) in [0, 1] on the CPU."""
        out = []
        for chunk in z.split(batch_size):
            chunk = chunk.to(self.device, self.dtype).view(-1, *self.latent_shape)
            if self.kind == "conv":
                out.append(self.model.decode(chunk).float().cpu())
            else:
                img = self.model.decode(chunk / self.scaling).sample
                out.append(((img.float() + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(out)


def load_conv(source: str) -> Codec:
    from playground.vae.model import IMAGE_SIZE, ConvVAE

    model = ConvVAE.from_pretrained(source).eval().to(get_device())
    return Codec(model, "conv", IMAGE_SIZE, 1, (model.latent_dim,))


def load_autoencoderkl(source: str) -> Codec:
    from diffusers import AutoencoderKL

    device = get_device()
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    model = AutoencoderKL.from_pretrained(source, torch_dtype=dtype).eval().to(device)
    cfg = model.config
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    size = min(KL_SIZE, int(cfg.sample_size)) if cfg.sample_size else KL_SIZE
    scaling = float(getattr(cfg, "scaling_factor", None) or 1.0)
    return Codec(model, "autoencoderkl", size, int(cfg.in_channels),
                 (int(cfg.latent_channels), size // factor, size // factor), scaling)


def read_config(source: str) -> dict:
    """The ``config.json`` of a local folder, or of a hub repo (fetched alone, before the
    weights, so the right class loads them)."""
    folder = Path(source)
    if folder.is_dir():
        path = folder / "config.json"
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        try:
            path = Path(hf_hub_download(source, "config.json"))
        except RemoteEntryNotFoundError:  # the repo is there, the file is not
            raise UserInputError(_not_a_vae(source, "it has no config.json (a diffusers "
                                            "pipeline? give the id of its VAE)")) from None
    if not path.is_file():
        raise UserInputError(_not_a_vae(source, "it has no config.json"))
    return json.loads(path.read_text())


def _not_a_vae(source: str, why: str) -> str:
    name = Path(source).name if Path(source).is_dir() else source
    return (f"'{name}' is not a VAE this tab can load: {why}. It takes a diffusers "
            f"AutoencoderKL (e.g. {SD_VAE_EXAMPLE}) or a ConvVAE saved by this playground (e.g. "
            "vae-olivetti pushed to the hub).")


def codec_kind(config: dict, source: str = "the model") -> str:
    """"autoencoderkl" (diffusers writes ``_class_name``) or "conv" (our ConvVAE's
    ``PyTorchModelHubMixin`` config holds its constructor arguments); else UserInputError."""
    from playground.vae.model import ConvVAE

    if config.get("_class_name") == "AutoencoderKL":
        return "autoencoderkl"
    conv_args = set(inspect.signature(ConvVAE.__init__).parameters) - {"self"}
    if "latent_dim" in config and set(config) <= conv_args:
        return "conv"
    described = config.get("_class_name") or config.get("model_type") or "another model"
    raise UserInputError(_not_a_vae(source, f"its config.json describes {described}"))


def load_codec_source(source: str) -> Codec:
    """``loader(source)`` for the registry: a local folder or a hub id, via from_pretrained;
    the class comes from the config (our ConvVAE or a diffusers AutoencoderKL)."""
    kind = codec_kind(read_config(source), source)
    return load_autoencoderkl(source) if kind == "autoencoderkl" else load_conv(source)


def load_codec(model: str | registry.ModelEntry) -> Codec:
    """The cached codec of a registry name or hub id, or of an entry the request resolved."""
    from playground.vae import FAMILY

    return registry.load_model(FAMILY, model, load_codec_source)
