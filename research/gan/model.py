"""The GAN model variants that did not ship (research/gan/LOG.md (b), (e), (f)).

Subclasses of the product's ``Generator`` / ``Discriminator`` that add one option each beside
the shipped layout; at their defaults they build the product models, weight for weight (the
same layers drawn from the same random state), and their folders load into the product classes
(``from_pretrained`` ignores the extra config keys).
- ``ResearchGenerator(upsample="resize")``: G doubles its resolution by nearest-neighbour
  upsampling then a 3x3 convolution (Odena et al. 2016: no checkerboard from the transposed
  kernel's uneven overlap); the first layer (z -> 4x4) is unchanged;
- ``ResearchDiscriminator(batch_norm=False)``: a plain D, no normalisation (convs with biases);
- ``ResearchDiscriminator(n_classes=K)``: an identity head beside the real/fake one (AC-GAN
  style), trained by ``research.gan.train`` with ``identity_loss``.
"""

from __future__ import annotations

import torch
from torch import nn

from playground.gan.model import (
    Discriminator,
    Generator,
    generator_from_tutorial_state_dict,
    init_weights,
)

UPSAMPLES = ("transposed", "resize")


class ResearchGenerator(Generator):
    """``Generator`` with ``upsample``: "transposed" (the DCGAN's, shipped) or "resize"."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1, image_size: int = 64,
                 upsample: str = "transposed"):
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
        # set before Generator.__init__, which builds the layers through _doubling
        self.upsample = upsample
        super().__init__(nz=nz, ngf=ngf, nc=nc, image_size=image_size)

    def _doubling(self, c_in: int, c_out: int) -> list[nn.Module]:
        if self.upsample == "transposed":
            return super()._doubling(c_in, c_out)
        return [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]


class ResearchDiscriminator(Discriminator):
    """``Discriminator`` with ``batch_norm`` and ``n_classes``.

    ``batch_norm=False`` (without spectral norm): the plain D, each image's logit depending on
    that image only; ``None`` (configs saved before the option) means batch norm unless
    spectral norm. ``n_classes`` > 0: identity logits (B, n_classes) over the people of the
    training photos, from the same features as the real/fake logit.
    """

    def __init__(self, ndf: int = 64, nc: int = 1, image_size: int = 64,
                 spectral_norm: bool = True, batch_norm: bool | None = None,
                 n_classes: int = 0):
        # set before Discriminator.__init__, which builds the layers through _conv and _norm
        self.batch_norm = (not spectral_norm) if batch_norm is None else batch_norm
        super().__init__(ndf=ndf, nc=nc, image_size=image_size, spectral_norm=spectral_norm)
        self.n_classes = n_classes
        self.classes = None
        if n_classes:
            head = nn.Conv2d(self.main[-1].in_channels, n_classes, 4, 1, 0)
            self.classes = (nn.utils.parametrizations.spectral_norm(head) if spectral_norm
                            else head)
            self.classes.apply(init_weights)

    def _conv(self, c_in: int, c_out: int, *shape: int) -> nn.Module:
        if self.batch_norm or self.spectral_norm:
            return super()._conv(c_in, c_out, *shape)
        return nn.Conv2d(c_in, c_out, *shape, bias=True)  # nothing after it: the plain D's bias

    def _norm(self, width: int) -> list[nn.Module]:
        return [nn.BatchNorm2d(width)] if self.batch_norm else []

    def forward(self, x: torch.Tensor, classes: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Real/fake logits (B,); with ``classes``, also the identity logits (B, n_classes)."""
        if not classes:
            return super().forward(x)
        if self.classes is None:
            raise ValueError("this discriminator has no identity head (n_classes=0)")
        h = self.main[:-1](x)  # (B, width, 4, 4)
        return self.main[-1](h).flatten(), self.classes(h).flatten(1)


def identity_loss(class_logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of each fake's identity prediction minus the entropy of the batch's mean
    prediction; class_logits (B, n_classes). Low when every face is one clear person and the
    batch spreads over many people."""
    p = class_logits.softmax(1)
    each = -(p * class_logits.log_softmax(1)).sum(1).mean()
    mean = p.mean(0)
    return each + (mean * mean.clamp_min(1e-12).log()).sum()


def generator_from_state_dict(state: dict) -> Generator:
    """``generator_from_tutorial_state_dict``, also for the resize layout (its last layer a
    3x3 ``Conv2d``, weight (nc, ngf, 3, 3)): a run's checkpoint, whichever G it trained."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    convs = [k for k, v in state.items()
             if k.startswith("main.") and k.endswith(".weight") and v.dim() == 4]
    last = max(convs, key=lambda k: int(k.split(".")[1]))
    if state[last].shape[-1] != 3:
        return generator_from_tutorial_state_dict(state)
    nc, ngf = state[last].shape[:2]
    model = ResearchGenerator(nz=int(state["main.0.weight"].shape[0]), ngf=int(ngf), nc=int(nc),
                              image_size=2 ** (len(convs) + 1), upsample="resize")
    model.load_state_dict(state, strict=True)  # other widths fail here
    return model.eval()
