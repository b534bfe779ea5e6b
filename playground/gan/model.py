"""DCGAN generator and discriminator (Radford et al. 2015), as in pytorch/examples `dcgan`.

Both are plain ``nn.Module``s saved in Hugging Face format through
``huggingface_hub.PyTorchModelHubMixin`` (``config.json`` + ``model.safetensors``). The
generator keeps the PyTorch-tutorial layer layout (``main.0`` ... ``main.12`` at 64 px), so the
state dict of the tutorial's colour DCGAN (nz=100, ngf=64, nc=3) loads into the same class.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

SIZES = (32, 64)


def _n_up(image_size: int) -> int:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2  # 4x4 seed, then doublings


class Generator(nn.Module, PyTorchModelHubMixin, library_name="playground",
                tags=["gan", "dcgan"]):
    """z (B, nz) or (B, nz, 1, 1) -> image (B, nc, S, S) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1, image_size: int = 64):
        super().__init__()
        self.nz, self.ngf, self.nc, self.image_size = nz, ngf, nc, image_size
        n_up = _n_up(image_size)
        width = ngf * 2 ** (n_up - 1)  # 64 px: ngf*8 at 4x4, then *4, *2, *1
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(n_up - 1):
            layers += [*self._doubling(width, width // 2),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [*self._doubling(width, nc), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def _doubling(self, c_in: int, c_out: int) -> list[nn.Module]:
        """The layers that double the resolution: the DCGAN's strided transposed convolution."""
        return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]  # (B, nz) -> (B, nz, 1, 1)
        return self.main(z)


class Discriminator(nn.Module, PyTorchModelHubMixin, library_name="playground",
                    tags=["gan", "dcgan"]):
    """image (B, nc, S, S) -> logit (B,) that the image is real.

    Normalisation: batch norm (the DCGAN D) or, with ``spectral_norm``, spectral norm instead
    (batch norm couples the real and fake batches). The shipped ``discriminator/config.json``
    also holds ``batch_norm: true`` and ``n_classes: 0``, options since moved to
    ``research/gan/model.py``; ``from_pretrained`` passes on only the keys this class takes.
    """

    def __init__(self, ndf: int = 64, nc: int = 1, image_size: int = 64,
                 spectral_norm: bool = True):
        super().__init__()
        self.spectral_norm = spectral_norm
        n_down = _n_up(image_size)
        layers: list[nn.Module] = [self._conv(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(n_down - 1):
            layers += [self._conv(width, width * 2, 4, 2, 1), *self._norm(width * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        layers += [self._conv(width, 1, 4, 1, 0)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def _conv(self, c_in: int, c_out: int, *shape: int) -> nn.Module:
        """A convolution without bias (a normalisation follows or replaces it)."""
        conv = nn.Conv2d(c_in, c_out, *shape, bias=False)
        return nn.utils.parametrizations.spectral_norm(conv) if self.spectral_norm else conv

    def _norm(self, width: int) -> list[nn.Module]:
        return [] if self.spectral_norm else [nn.BatchNorm2d(width)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0."""
    name = type(module).__name__
    if "Conv" in name and hasattr(module, "weight"):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:  # (the convs here have none)
            nn.init.zeros_(module.bias)
    elif "BatchNorm" in name:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def generator_from_tutorial_state_dict(state: dict) -> Generator:
    """Build our Generator from a pytorch-tutorial DCGAN ``netG`` state dict (shapes inferred)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    first, last = state["main.0.weight"], max(
        (k for k in state if k.endswith(".weight") and k.startswith("main.")),
        key=lambda k: int(k.split(".")[1]))
    n_convs = sum(1 for k, v in state.items() if k.endswith(".weight") and v.dim() == 4)
    nz, width = first.shape[:2]
    ngf, nc = state[last].shape[:2]  # ConvTranspose2d weight: (in, out, 4, 4)
    model = Generator(nz=int(nz), ngf=int(ngf), nc=int(nc), image_size=2 ** (n_convs + 1))
    if model.ngf * 2 ** (n_convs - 2) != width:
        raise ValueError("state dict does not have the DCGAN width layout")
    model.load_state_dict(state, strict=True)
    return model.eval()
