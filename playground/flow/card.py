"""Model card + preview pictures for a shipped flow:
`python -m playground.flow.card weights/flow-8gaussians [--n 100000]`.

Writes README.md (data, steps, wall time, device, NLL/KL with standard errors, the command),
metrics.json, and density.png / samples.png that the tab shows before any model is loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from playground.core.plot2d import density_image, scatter_image
from playground.core.seeding import make_generator
from playground.data.targets2d import get_target
from playground.flow.metrics import density_grid, kl_estimate, nll
from playground.flow.model import FlowModel

CARD_SEED = 31337  # evaluation points, independent of the training and test seeds


def evaluate_shipped(model: FlowModel, target: str, n: int) -> dict:
    tgt = get_target(target)
    x = tgt.sample(n, torch.Generator().manual_seed(CARD_SEED))
    test_nll, se = nll(model, x)
    metrics = {"target": target, "n_eval": n, "nll": round(test_nll, 4), "nll_se": round(se, 4)}
    if tgt.log_prob is not None:
        kl = kl_estimate(model, tgt, n=n, seed=CARD_SEED)
        metrics.update(kl=round(kl["kl"], 4), kl_se=round(kl["kl_se"], 4),
                       target_entropy=round(-tgt.log_prob(x).double().mean().item(), 4))
    _, mass = density_grid(model, 200)
    metrics["mass_in_box"] = round(mass, 4)
    return metrics


def card_text(folder: Path, metrics: dict, summary: dict) -> str:
    cfg = summary.get("flow_config", {})
    target = metrics["target"]
    steps = summary.get("steps")
    kl = (f"- KL(p‖q): **{metrics['kl']:.4f} ± {metrics['kl_se']:.4f}** nats (Monte Carlo over "
          f"{metrics['n_eval']:,} samples of p; ± one standard error); entropy of p "
          f"{metrics['target_entropy']:.4f} nats\n" if "kl" in metrics else
          "- KL(p‖q): not available (this target has no closed-form density)\n")
    command = (f"OMP_NUM_THREADS=1 python -m playground.train flow --preset ship --set "
               f"target={target} --max-steps {steps} --log-every 100 --checkpoint-every 1000 "
               f"--out weights/{folder.name}")
    return f"""---
library_name: zuko
tags: [normalizing-flow, zuko, playground, 2d-density]
---
# {folder.name}

A 2-D {cfg.get('flow_type', 'nsf').upper()} normalizing flow (zuko {cfg.get('depth')} transforms,
hidden MLP {cfg.get('width')}×2, {cfg.get('bins')} spline bins) fitted by maximum likelihood to the
`{target}` toy target of the Generative Models Playground (`playground/data/targets2d.py`).

- Data: fresh samples of the target every step (batch {cfg.get('batch_size')}), no fixed data set
- Steps: {steps}; Adam, lr {cfg.get('lr')} with {cfg.get('warmup')} warm-up steps and cosine decay
  to {cfg.get('final_lr_frac')}×; gradient clipping {cfg.get('grad_clip')}
- Wall time: {summary.get('wall_time_s')} s on {summary.get('device')} (one thread, a shared
  2-core machine)
- Test NLL: **{metrics['nll']:.4f} ± {metrics['nll_se']:.4f}** nats per point
  ({metrics['n_eval']:,} fresh target samples, seed {CARD_SEED})
{kl}- Probability mass of q inside the box [-4, 4]²: {metrics['mass_in_box']:.4f}

Load: `playground.flow.model.FlowModel.from_pretrained("weights/{folder.name}")`
(config.json + model.safetensors).

Reproduce:

```
{command}
python -m playground.flow.card weights/{folder.name}
```
"""


def write_card(folder: str | Path, n: int = 100_000) -> dict:
    folder = Path(folder)
    torch.set_num_threads(1)
    model = FlowModel.from_pretrained(str(folder)).eval()
    summary = json.loads((folder / "training_summary.json").read_text())
    target = summary["flow_config"]["target"]
    metrics = evaluate_shipped(model, target, n)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (folder / "README.md").write_text(card_text(folder, metrics, summary))
    logq, _ = density_grid(model, 200)
    density_image(logq.numpy(), 400).save(folder / "density.png")
    with torch.no_grad():
        samples = model.sample(1000, make_generator(0)).numpy()
    scatter_image(samples, 400).save(folder / "samples.png")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(write_card(args.folder, args.n)))
