"""Plain inference functions of the flow tab (no gradio): density view, log p at a point,
layer-by-layer view. Each returns a small dataclass of plain values (PNG paths carry a
reproducibility record) and resolves the model's registry entry once per request.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

from playground.core import registry
from playground.core.errors import check_range
from playground.core.plot2d import (
    angle_colors,
    density_image,
    layer_panel,
    scatter_image,
    small_multiples,
)
from playground.core.repro import make_record, save_png
from playground.core.seeding import make_generator
from playground.core.sessions import unique_output
from playground.data.targets2d import TARGETS, get_target
from playground.flow import FAMILY
from playground.flow.metrics import density_grid, kl_estimate, log_prob_batched, nll

EVAL_SEED = 4242  # test points of a target for the metrics shown in the tab
IMAGE_SIZE = 400


def _load(source: str):
    from playground.core.device import get_device
    from playground.flow.model import FlowModel

    # fp32 on every device: spline bins and log-dets are not safe in fp16
    model = FlowModel.from_pretrained(source)
    return model.to(get_device()).eval()


def load_flow(flow: str | registry.ModelEntry):
    """A flow from the registry (shipped, session-trained, or a hub id), cached; pass the
    entry when the request has resolved it already."""
    return registry.load_model(FAMILY, flow, _load)


def _record(entry: registry.ModelEntry, params: dict, seed: int | None) -> dict:
    """The reproducibility record; a hub model's carries the commit sha it was loaded at."""
    return make_record(FAMILY, entry.name, entry.source, params, seed,
                       revision=registry.revision(entry))


@dataclass
class DensityView:
    """What ``density_view`` shows: two PNGs (with their reproducibility record) and metrics."""

    heatmap: str  # PNG path: the density q(x) on [-4, 4]²
    samples: str  # PNG path: samples x = f⁻¹(z)
    metrics: dict  # nats; the keys are listed in density_view's docstring (shown as JSON)


@dataclass
class PointDensity:
    """Exact log-densities (nats) at one point."""

    x: float
    y: float
    log_q: float  # the flow
    log_p_target: float | None = None  # the target, where its density is known

    def as_dict(self) -> dict:
        """The JSON the tab shows (``log_p_target`` only when known)."""
        out = {"x": self.x, "y": self.y, "log_q": self.log_q}
        if self.log_p_target is not None:
            out["log_p_target"] = self.log_p_target
        return out


@dataclass
class LayerStep:
    """One layer in the generative direction z → x."""

    step: int  # 1 = the first layer applied to the base noise
    layer: str  # "6: spline (autoregressive)": its index in data → base order and its kind
    mean_log_det: float  # mean log|det J| of this layer (nats): how much it stretches area


@dataclass
class LayersView:
    image: str  # PNG path: small multiples from base (left) to data
    layers: list[LayerStep]

    def table(self) -> list[dict]:
        return [dataclasses.asdict(step) for step in self.layers]


def density_view(target: str, flow: str, n_samples: int = 1000, seed: int = 0,
                 resolution: int = 128) -> DensityView:
    """Heatmap of log q, flow samples and the metrics of ``flow`` against ``target``.

    The metrics hold the test NLL (nats) on 5,000 target points, KL(p‖q) ± its Monte-Carlo
    standard error and the target's entropy for analytic targets, the probability mass inside
    the box, the seed, the flow's config, the final figures of the run that made it (local
    models) and the reproducibility record.
    """
    tgt = get_target(target)
    n_samples = check_range("Number of samples", n_samples, 1, 20_000, integer=True)
    resolution = check_range("Resolution", resolution, 16, 400, integer=True)
    entry = registry.resolve(FAMILY, flow)
    model = load_flow(entry)
    logq, mass = density_grid(model, resolution)
    points = tgt.sample(5000, torch.Generator().manual_seed(EVAL_SEED))
    test_nll, test_se = nll(model, points)
    metrics = {"flow": entry.name, "target": target, "test_nll": round(test_nll, 4),
               "test_nll_se": round(test_se, 4), "mass_in_box": round(mass, 4), "seed": seed,
               "flow_config": dict(model.config)}
    if tgt.log_prob is not None:
        kl = kl_estimate(model, tgt, n=5000, seed=EVAL_SEED)
        metrics.update(kl=round(kl["kl"], 4), kl_se=round(kl["kl_se"], 4),
                       target_entropy=round(-tgt.log_prob(points).mean().item(), 4))
    metrics.update(_training_figures(entry))
    with torch.no_grad():
        samples = model.sample(n_samples, make_generator(seed)).cpu().numpy()
    record = _record(entry, {"target": target, "n_samples": n_samples,
                             "resolution": resolution}, seed)
    # fresh names in the session's folder: two users on one seed never share (or rewrite) a file
    heat = save_png(density_image(logq.numpy(), IMAGE_SIZE), record,
                    unique_output(FAMILY, f"density-{target}-seed{seed}", ".png"))
    dots = save_png(scatter_image(samples, IMAGE_SIZE), record,
                    unique_output(FAMILY, f"samples-{target}-seed{seed}", ".png"))
    metrics["record"] = record
    return DensityView(str(heat), str(dots), metrics)


def _training_figures(entry: registry.ModelEntry) -> dict:
    """Final train/test NLL logged by the run that made this flow (local models only)."""
    path = entry.path / "training_summary.json" if entry.is_local else None
    if path is None or not path.is_file():
        return {}
    final = json.loads(path.read_text()).get("final_metrics", {})
    return {f"training_{k}": round(v, 4) for k, v in final.items()
            if k in ("train_nll", "test_nll", "step")}


def log_prob_at(flow: str, x: float, y: float, target: str | None = None) -> PointDensity:
    """Exact log q(x, y) of the flow (and log p of an analytic target) at one point."""
    x = check_range("x", x, -1e6, 1e6)
    y = check_range("y", y, -1e6, 1e6)
    model = load_flow(flow)
    point = torch.tensor([[x, y]], dtype=torch.float32)
    tgt = TARGETS.get(target or "")
    log_p = (round(float(tgt.log_prob(point)[0]), 4)
             if tgt is not None and tgt.log_prob is not None else None)
    return PointDensity(round(x, 4), round(y, 4),
                        round(float(log_prob_batched(model, point)[0]), 4), log_p)


def _grid_lines(n_lines: int = 13, n_points: int = 120, half: float = 3.0) -> list[torch.Tensor]:
    """Horizontal and vertical lines of a grid in base space, each (n_points, 2)."""
    ticks, t = torch.linspace(-half, half, n_lines), torch.linspace(-half, half, n_points)
    vertical = [torch.stack([torch.full_like(t, v), t], 1) for v in ticks]
    horizontal = [torch.stack([t, torch.full_like(t, v)], 1) for v in ticks]
    return vertical + horizontal


@torch.no_grad()
def layers_view(flow: str, n_samples: int = 800, seed: int = 0) -> LayersView:
    """Small multiples of a grid and samples warped from base (left) to data, layer by layer,
    and each layer's mean log|det J| in the generative direction z → x."""
    from playground.flow.model import layer_inverse, layer_outputs

    n_samples = check_range("Number of samples", n_samples, 10, 5000, integer=True)
    entry = registry.resolve(FAMILY, flow)
    model = load_flow(entry)
    device = next(model.parameters()).device
    z = torch.randn(n_samples, 2, generator=make_generator(seed))  # CPU noise, then moved
    colors = angle_colors(z.numpy())
    point_states = [h.cpu() for h in layer_inverse(model, z.to(device))]  # [z, ..., x]
    line_states = list(zip(*[[h.cpu() for h in layer_inverse(model, line.to(device))]
                             for line in _grid_lines()], strict=True))
    _, ladjs = layer_outputs(model, point_states[-1].to(device))  # data → base, layer order
    names = model.layer_names()
    steps, panels = [], [layer_panel([ln.numpy() for ln in line_states[0]],
                                     z.numpy(), colors, "base z ~ N(0, I)\nlog|det| = 0")]
    for k in range(1, len(point_states)):
        layer = len(names) - k  # layer_inverse applies the last layer first
        logdet = -float(ladjs[layer].mean())
        steps.append(LayerStep(k, f"{layer + 1}: {names[layer]}", round(logdet, 4)))
        title = f"after {k}: {names[layer]}\nlog|det| = {logdet:+.3f}"
        panels.append(layer_panel([ln.numpy() for ln in line_states[k]],
                                  point_states[k].numpy(), colors, title))
    record = _record(entry, {"view": "layers", "n_samples": n_samples}, seed)
    path = unique_output(FAMILY, f"layers-seed{seed}", ".png")
    return LayersView(str(save_png(small_multiples(panels, columns=4), record, path)), steps)
