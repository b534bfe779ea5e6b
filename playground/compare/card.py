"""Scores, panels and model card of a shipped comparison:
`python -m playground.compare.card weights/compare-8gaussians [--n 5000]`.

Writes results.json (the table the tab shows at once), panel-<family>.png (samples, over the
exact density for the flow and the AR model) and README.md (data, steps, wall time, device,
the metrics with standard errors, the exact commands).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from playground.compare.inference import (
    EVAL_SEED,
    RESULTS,
    ScoreRow,
    held_out_points,
    load_fit_folder,
    score_models,
    train_seconds,
)
from playground.compare.metrics import target_entropy
from playground.compare.render import panel_image
from playground.compare.sampling import density_grid, draw
from playground.compare.train import LABELS
from playground.core.repro import make_record, save_png


def write_panels(folder: Path, models: dict, held: torch.Tensor, record: dict) -> None:
    for family, model in models.items():
        pts = draw(family, model, 1000, torch.Generator().manual_seed(0)).numpy()
        grid = density_grid(family, model, 128)
        image = panel_image(LABELS[family], pts, None if grid is None else grid.numpy(),
                            held[:1000].numpy())
        save_png(image, {**record, "params": {**record["params"], "panel": family}},
                 folder / f"panel-{family}.png")


def card_text(folder: Path, data: dict, summary: dict) -> str:
    cfg = summary.get("compare_config", {})
    target = data["target"]
    lines = ["| " + " | ".join(ScoreRow(**r).table_row().values()) + " |" for r in data["rows"]]
    command = (f"OMP_NUM_THREADS=1 python -m playground.train compare --preset ship --set "
               f"target={target} --log-every 100 --checkpoint-every 0 "
               f"--out weights/{folder.name}")
    entropy = (f"Entropy of the target on these points: **{data['entropy']:.4f}** nats (no NLL "
               "can be below it).\n" if data.get("entropy") is not None else "")
    return f"""---
tags: [gan, vae, normalizing-flow, diffusion, autoregressive, playground, 2d-density]
---
# {folder.name}

Five small 2-D generative models fitted together to the `{target}` toy target of the Generative
Models Playground (`playground/compare/`): a GAN (non-saturating), a VAE (latent
{cfg.get('vae_latent')}), zuko's neural spline flow ({cfg.get('flow_depth')} transforms,
{cfg.get('flow_width')}×2), a DDPM (T = {cfg.get('timesteps')}, diffusers' `DDPMScheduler`,
{cfg.get('beta_schedule')} β from 1e-4 to {cfg.get('beta_end')}) and an autoregressive
mixture-density model p(x)·p(y|x) ({cfg.get('ar_components')} components). One subfolder per
family (config.json + model.safetensors); load with `playground.compare.inference.load_fit_folder`.

- Data: fresh target samples every step, the same batch of {cfg.get('batch_size')} for every family
- Steps: {summary.get('steps')} for every family, interleaved in one run; wall time
  {summary.get('wall_time_s')} s on {summary.get('device')} (one thread, a shared 2-core machine);
  each family's own training time is in the table
- Scores on {data['n_eval']:,} held-out target points (seed {EVAL_SEED}), as many samples from
  each model; ± one standard error. Energy distance D² (0 iff the distributions are equal);
  NLL exact for the flow and AR, an upper bound for the VAE and diffusion, none for a GAN.

| family | energy distance | NLL or bound (nats) | modes covered | train s | samples/s | per mode |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}

{entropy}
Reproduce:

```
{command}
python -m playground.compare.card weights/{folder.name} --n {data['n_eval']}
```
"""


def write_card(folder: Path, n: int = 5000) -> dict:
    summary = json.loads((folder / "training_summary.json").read_text())
    target = summary["compare_config"]["target"]
    models = load_fit_folder(folder)
    held = held_out_points(target, n)
    rows = score_models(models, held, target, train_s=train_seconds(folder),
                        collapsed_gan=target == "8gaussians")
    entropy = target_entropy(target, held)
    record = make_record("compare", folder.name, str(folder),
                         {"target": target, "n_eval": n, "held_out_seed": EVAL_SEED}, 0)
    data = {"target": target, "n_eval": n,
            "entropy": None if entropy is None else round(entropy.value, 4),
            "rows": [r.__dict__ for r in rows], "record": record}
    (folder / RESULTS).write_text(json.dumps(data, indent=1))
    write_panels(folder, models, held, record)
    (folder / "README.md").write_text(card_text(folder, data, summary))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.folders:
        data = write_card(Path(folder), args.n)
        print(folder, json.dumps([(r["label"], r["distance"], r["nll"], r["modes_covered"])
                                  for r in data["rows"]]))


if __name__ == "__main__":
    main()
