"""2-D normalizing flows built from zuko layers, saved in Hugging Face format.

``FlowModel`` wraps a ``zuko`` flow (``PyTorchModelHubMixin``: config.json + model.safetensors).
Three kinds:

- ``realnvp``: zuko's RealNVP (affine coupling layers with alternating masks);
- ``glow``: Glow-style steps, each ActNorm → invertible linear (LU) → affine coupling;
- ``nsf``: zuko's neural spline flow (monotonic rational-quadratic splines).

zuko has no ActNorm, so ``ActNorm`` is defined here (an affine layer with Glow's data-dependent
initialisation, ``init_actnorm``); the LU-parametrised linear layer is zuko's ``LULinearTransform``.
zuko's flows are stored as one composed transform from data x to base z; ``layer_outputs`` and
``layer_inverse`` walk that list one layer at a time for the layer-by-layer view.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.distributions import AffineTransform
from zuko.distributions import DiagNormal
from zuko.flows import NSF, RealNVP
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import Flow, LazyTransform, UnconditionalDistribution, UnconditionalTransform
from zuko.transforms import LULinearTransform

FLOW_TYPES = ("realnvp", "glow", "nsf")
LOG_2PI = math.log(2 * math.pi)


class ActNorm(LazyTransform):
    """Per-feature affine map z = x·exp(log_scale) + shift (Glow's ActNorm; not in zuko)."""

    def __init__(self, features: int = 2) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Data-dependent init: outputs of this batch get zero mean and unit variance."""
        std = x.std(0).clamp_min(1e-3)
        self.log_scale.copy_(-std.log())
        self.shift.copy_(-x.mean(0) / std)
        self.initialized.fill_(True)

    def forward(self, c: torch.Tensor | None = None) -> AffineTransform:
        return AffineTransform(self.shift, self.log_scale.exp(), event_dim=1)


def _rotation_lu(angle: float) -> torch.Tensor:
    """LU factors (L with free diagonal, U unit upper) of the rotation by ``angle``, packed."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s / c], [s, 1 / c]])  # L = [[c,0],[s,1/c]], U = [[1,-s/c],[0,1]]


def build_glow(depth: int, width: int, features: int = 2) -> Flow:
    steps = []
    for i in range(depth):
        angle = (i + 1) * math.pi / (2 * depth + 1)  # spread, never near ±π/2 (c ≠ 0)
        steps += [ActNorm(features),
                  UnconditionalTransform(LULinearTransform, _rotation_lu(angle)),
                  GeneralCouplingTransform(features, mask=torch.arange(features) % 2 == i % 2,
                                           hidden_features=(width, width))]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features),
                                     buffer=True)
    return Flow(steps, base)


def build_flow(flow_type: str, depth: int, width: int, bins: int = 8) -> Flow:
    hidden = (width, width)
    if flow_type == "realnvp":
        return RealNVP(2, transforms=depth, hidden_features=hidden)
    if flow_type == "glow":
        return build_glow(depth, width)
    if flow_type == "nsf":
        return NSF(2, transforms=depth, hidden_features=hidden, bins=bins)
    raise ValueError(f"unknown flow type {flow_type!r}; choose from {FLOW_TYPES}")


LAYER_NAMES = {"ActNorm": "ActNorm", "UnconditionalTransform": "LU linear",
               "GeneralCouplingTransform": "affine coupling",
               "MaskedAutoregressiveTransform": "spline (autoregressive)"}


class FlowModel(nn.Module, PyTorchModelHubMixin, library_name="zuko",
                tags=["normalizing-flow", "zuko", "playground"]):
    """A 2-D normalizing flow; ``forward(x)`` returns log q(x) of shape (N,)."""

    def __init__(self, flow_type: str = "nsf", depth: int = 4, width: int = 64, bins: int = 8,
                 target: str = "") -> None:
        super().__init__()
        self.config = {"flow_type": flow_type, "depth": depth, "width": width, "bins": bins,
                       "target": target}
        self.flow = build_flow(flow_type, depth, width, bins)

    @property
    def layers(self) -> list[nn.Module]:
        """The lazy layers in the data → base direction."""
        return list(self.flow.transform.transforms)

    def layer_names(self) -> list[str]:
        return [LAYER_NAMES.get(type(t).__name__, type(t).__name__) for t in self.layers]

    def forward(self, x: torch.Tensor, from_base: bool = False):
        """log q(x), (N,); with ``from_base``, ``x`` is base noise z and the result is
        ``rsample_and_log_prob(z)`` (so a reverse-KL step also goes through DDP's forward)."""
        return self.rsample_and_log_prob(x) if from_base else self.flow().log_prob(x)

    def rsample_and_log_prob(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f⁻¹(z) (N, 2) and log q(x) (N,) for base noise z (N, 2), differentiable in the
        parameters: log q(x) = log N(z) − log|det ∂f⁻¹/∂z| (zuko's rsample_and_log_prob with
        our own noise, so a seed fixes it)."""
        dist = self.flow()
        x, ladj = dist.transform.inv.call_and_ladj(z)
        return x, dist.base.log_prob(z) - ladj

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow().log_prob(x)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 2) samples; the base noise comes from ``generator`` (CPU), never the global RNG."""
        z = torch.randn(n, 2, generator=generator)
        return self.flow().transform.inv(z.to(self.device_))

    @property
    def device_(self) -> torch.device:
        return next(self.parameters()).device


@torch.no_grad()
def init_actnorm(model: FlowModel, x: torch.Tensor) -> None:
    """Glow's data-dependent ActNorm init: pass ``x`` (N, 2) through the layers in order."""
    h = x
    for layer in model.layers:
        if isinstance(layer, ActNorm) and not bool(layer.initialized):
            layer.init_from(h)
        h = layer()(h)


def base_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2).sum(-1) - LOG_2PI


def layer_outputs(model: FlowModel, x: torch.Tensor) -> tuple[list[torch.Tensor], list]:
    """Walk data → base. Returns ([x, h1, ..., z], [ladj_1, ..., ladj_L]), each ladj (N,)."""
    states, ladjs = [x], []
    h = x
    for layer in model.layers:
        h, ladj = layer().call_and_ladj(h)
        states.append(h)
        ladjs.append(ladj)
    return states, ladjs


def layer_inverse(model: FlowModel, z: torch.Tensor) -> list[torch.Tensor]:
    """Walk base → data: [z, ..., x] applying each layer's inverse, last layer first."""
    states = [z]
    h = z
    for layer in reversed(model.layers):
        h = layer().inv(h)
        states.append(h)
    return states
