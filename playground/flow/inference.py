"""Plain inference functions of the flow tab (no gradio): density view, log p at a point,
layer-by-layer view. Each returns plain values and a reproducibility record.
"""

from __future__ import annotations

import json

import torch

from playground.core import registry
from playground.core.errors import check_range
from playground.core.repro import make_record, save_png
from playground.core.seeding import make_generator
from playground.flow import FAMILY
from playground.flow.metrics import density_grid, kl_estimate, log_prob_batched, nll
from playground.flow.render import (
    angle_colors,
    density_image,
    layer_panel,
    scatter_image,
    small_multiples,
)
from playground.flow.targets import TARGETS, get_target

EVAL_SEED = 4242  # test points of a target for the metrics shown in the tab
IMAGE_SIZE = 400


def _load(source: str):
    from playground.flow.model import FlowModel

    model = FlowModel.from_pretrained(source)
    return model.eval()


def load_flow(name: str):
    """A flow from the registry (shipped, session-trained, or a hub id), cached."""
    return registry.load_model(FAMILY, name, _load)


def _record(name: str, params: dict, seed: int | None) -> dict:
    entry = registry.resolve(FAMILY, name)
    return make_record(FAMILY, name, entry.source, params, seed)


def density_view(target: str, flow: str, n_samples: int = 1000, seed: int = 0,
                 resolution: int = 128) -> tuple[str, str, dict]:
    """Heatmap of log q, flow samples and the metrics of ``flow`` against ``target``.

    Returns (heatmap PNG path, samples PNG path, metrics dict). The metrics hold the test NLL
    (nats) on 5,000 target points, KL(p‖q) ± its Monte-Carlo standard error for analytic
    targets, the probability mass inside the box, and the seed.
    """
    tgt = get_target(target)
    n_samples = check_range("Number of samples", n_samples, 1, 20_000, integer=True)
    resolution = check_range("Resolution", resolution, 16, 400, integer=True)
    model = load_flow(flow)
    logq, mass = density_grid(model, resolution)
    points = tgt.sample(5000, torch.Generator().manual_seed(EVAL_SEED))
    test_nll, test_se = nll(model, points)
    metrics = {"flow": flow, "target": target, "test_nll": round(test_nll, 4),
               "test_nll_se": round(test_se, 4), "mass_in_box": round(mass, 4), "seed": seed,
               "flow_config": dict(model.config)}
    if tgt.log_prob is not None:
        kl = kl_estimate(model, tgt, n=5000, seed=EVAL_SEED)
        metrics.update(kl=round(kl["kl"], 4), kl_se=round(kl["kl_se"], 4),
                       target_entropy=round(-tgt.log_prob(points).mean().item(), 4))
    metrics.update(_training_figures(flow))
    with torch.no_grad():
        samples = model.sample(n_samples, make_generator(seed)).cpu().numpy()
    record = _record(flow, {"target": target, "n_samples": n_samples,
                            "resolution": resolution}, seed)
    heat = save_png(density_image(logq.numpy(), IMAGE_SIZE), record)
    dots = save_png(scatter_image(samples, IMAGE_SIZE), record)
    metrics["record"] = record
    return str(heat), str(dots), metrics


def _training_figures(flow: str) -> dict:
    """Final train/test NLL logged by the run that made this flow (local models only)."""
    entry = registry.resolve(FAMILY, flow)
    path = entry.path / "training_summary.json" if entry.is_local else None
    if path is None or not path.is_file():
        return {}
    final = json.loads(path.read_text()).get("final_metrics", {})
    return {f"training_{k}": round(v, 4) for k, v in final.items()
            if k in ("train_nll", "test_nll", "step")}


def log_prob_at(flow: str, x: float, y: float, target: str | None = None) -> dict:
    """Exact log q(x, y) of the flow (and log p of an analytic target) at one point."""
    x = check_range("x", x, -1e6, 1e6)
    y = check_range("y", y, -1e6, 1e6)
    model = load_flow(flow)
    point = torch.tensor([[x, y]], dtype=torch.float32)
    out = {"x": round(x, 4), "y": round(y, 4),
           "log_q": round(float(log_prob_batched(model, point)[0]), 4)}
    tgt = TARGETS.get(target or "")
    if tgt is not None and tgt.log_prob is not None:
        out["log_p_target"] = round(float(tgt.log_prob(point)[0]), 4)
    return out


def _grid_lines(n_lines: int = 13, n_points: int = 120, half: float = 3.0) -> list[torch.Tensor]:
    """Horizontal and vertical lines of a grid in base space, each (n_points, 2)."""
    ticks, t = torch.linspace(-half, half, n_lines), torch.linspace(-half, half, n_points)
    vertical = [torch.stack([torch.full_like(t, v), t], 1) for v in ticks]
    horizontal = [torch.stack([t, torch.full_like(t, v)], 1) for v in ticks]
    return vertical + horizontal


@torch.no_grad()
def layers_view(flow: str, n_samples: int = 800, seed: int = 0) -> tuple[str, list[dict]]:
    """Small multiples of a grid and samples warped from base (left) to data, layer by layer.

    Returns (PNG path, one row per layer: name and mean log|det J| of that layer in the
    generative direction z → x, i.e. how much it stretches area, in nats).
    """
    from playground.flow.model import layer_inverse, layer_outputs

    n_samples = check_range("Number of samples", n_samples, 10, 5000, integer=True)
    model = load_flow(flow)
    z = torch.randn(n_samples, 2, generator=make_generator(seed))
    colors = angle_colors(z.numpy())
    point_states = layer_inverse(model, z)  # [z, ..., x]
    lines = _grid_lines()
    line_states = list(zip(*[layer_inverse(model, line) for line in lines], strict=True))
    _, ladjs = layer_outputs(model, point_states[-1])  # data → base, layer order
    names = model.layer_names()
    rows, panels = [], [layer_panel([ln.numpy() for ln in line_states[0]],
                                    z.numpy(), colors, "base z ~ N(0, I)\nlog|det| = 0")]
    for k in range(1, len(point_states)):
        layer = len(names) - k  # layer_inverse applies the last layer first
        logdet = -float(ladjs[layer].mean())
        rows.append({"step": k, "layer": f"{layer + 1}: {names[layer]}",
                     "mean_log_det": round(logdet, 4)})
        title = f"after {k}: {names[layer]}\nlog|det| = {logdet:+.3f}"
        panels.append(layer_panel([ln.numpy() for ln in line_states[k]],
                                  point_states[k].numpy(), colors, title))
    record = _record(flow, {"view": "layers", "n_samples": n_samples}, seed)
    return str(save_png(small_multiples(panels, columns=4), record)), rows
