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


# how G doubles its resolution: the DCGAN's strided transposed convolution (4x4, stride 2),
# or nearest-neighbour upsampling then a 3x3 convolution ("resize", Odena et al. 2016: no
# checkerboard pattern from the kernel's uneven overlap)
UPSAMPLES = ("transposed", "resize")


def _doubling(c_in: int, c_out: int, upsample: str) -> list[nn.Module]:
    if upsample == "transposed":
        return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1,
                                                                   bias=False)]


class Generator(nn.Module, PyTorchModelHubMixin, library_name="playground",
                tags=["gan", "dcgan"]):
    """z (B, nz) or (B, nz, 1, 1) -> image (B, nc, S, S) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1, image_size: int = 64,
                 upsample: str = "transposed"):
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
        self.nz, self.ngf, self.nc, self.image_size = nz, ngf, nc, image_size
        self.upsample = upsample
        n_up = _n_up(image_size)
        width = ngf * 2 ** (n_up - 1)  # 64 px: ngf*8 at 4x4, then *4, *2, *1
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(n_up - 1):
            layers += [*_doubling(width, width // 2, upsample),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [*_doubling(width, nc, upsample), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]  # (B, nz) -> (B, nz, 1, 1)
        return self.main(z)


class Discriminator(nn.Module, PyTorchModelHubMixin, library_name="playground",
                    tags=["gan", "dcgan"]):
    """image (B, nc, S, S) -> logit (B,) that the image is real.

    Normalisation: batch norm (the DCGAN D), spectral norm, or none (``batch_norm=False``: each
    image's logit depends on that image only). ``batch_norm=None`` (configs saved before the
    option) means batch norm unless spectral norm. ``n_classes`` > 0 adds an identity head
    beside the real/fake one (AC-GAN style): logits (B, n_classes) over the people of the
    training photos, from the same features.
    """

    def __init__(self, ndf: int = 64, nc: int = 1, image_size: int = 64,
                 spectral_norm: bool = True, batch_norm: bool | None = None,
                 n_classes: int = 0):
        super().__init__()
        n_down = _n_up(image_size)
        norm = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        # spectral norm replaces batch norm (BN couples real and fake batches)
        use_bn = (not spectral_norm) if batch_norm is None else batch_norm
        bias = not (use_bn or spectral_norm)  # the plain D gets biases (the others never had)
        layers: list[nn.Module] = [norm(nn.Conv2d(nc, ndf, 4, 2, 1, bias=bias)),
                                   nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(n_down - 1):
            layers += [norm(nn.Conv2d(width, width * 2, 4, 2, 1, bias=bias))]
            layers += [nn.BatchNorm2d(width * 2)] if use_bn else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        layers += [norm(nn.Conv2d(width, 1, 4, 1, 0, bias=bias))]
        self.main = nn.Sequential(*layers)
        self.n_classes = n_classes
        self.classes = norm(nn.Conv2d(width, n_classes, 4, 1, 0)) if n_classes else None
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, classes: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Real/fake logits (B,); with ``classes``, also the identity logits (B, n_classes)."""
        if not classes:
            return self.main(x).flatten()
        if self.classes is None:
            raise ValueError("this discriminator has no identity head (n_classes=0)")
        h = self.main[:-1](x)  # (B, width, 4, 4)
        return self.main[-1](h).flatten(), self.classes(h).flatten(1)


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0."""
    name = type(module).__name__
    if "Conv" in name and hasattr(module, "weight"):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:  # only the plain D's convs have biases
            nn.init.zeros_(module.bias)
    elif "BatchNorm" in name:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def generator_from_tutorial_state_dict(state: dict) -> Generator:
    """Build our Generator from a pytorch-tutorial DCGAN ``netG`` state dict (shapes inferred;
    also our ``upsample="resize"`` layout)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    first, last = state["main.0.weight"], max(
        (k for k in state if k.endswith(".weight") and k.startswith("main.")),
        key=lambda k: int(k.split(".")[1]))
    n_convs = sum(1 for k, v in state.items() if k.endswith(".weight") and v.dim() == 4)
    nz, width = first.shape[:2]
    resize = state[last].shape[-1] == 3  # our upsample="resize" layout: a 3x3 Conv2d last
    nc, ngf = state[last].shape[:2] if resize else reversed(state[last].shape[:2])
    model = Generator(nz=int(nz), ngf=int(ngf), nc=int(nc), image_size=2 ** (n_convs + 1),
                      upsample="resize" if resize else "transposed")
    if model.ngf * 2 ** (n_convs - 2) != width:
        raise ValueError("state dict does not have the DCGAN width layout")
    model.load_state_dict(state, strict=True)
    return model.eval()
