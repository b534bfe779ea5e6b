"""Choose a txt2img pipeline's autoguidance setting on seed sets that will not score it.

    python -m research.txt2img.autoguidance_sweep runs/t2i2-pb \\
        --guide runs/t2i2-pa --guide runs/t2i2-pb-snapshots/step000500 \\
        --weight 1 --weight 2 --max-t 600 --max-t 1000 --seeds 0 1 --n 100 \\
        --out /work/runs/t2i2-ag-sweep.jsonl

Every (guide, guidance, weight, max_t) setting, and the plain pipeline at each guidance, is
sampled on each seed set's held-out and two-object prompts (``evaluate.eval_sets``, DDIM at
the app's steps) and scored with the adherence checker and the artefact measures. Each result
is one JSON line, appended as soon as it is measured: a stopped sweep run again with the same
``--out`` skips what is there and goes on.

The rule (fixed before the sweep, printed with the table): among the settings whose held-out
"all five" is at least ``--min-all`` on every seed set, the highest mean held-out colour+shape
over the seed sets; ties go to the higher two-object colour+shape. The winner is then measured
on the other seed sets with ``python -m playground.txt2img.evaluate``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from playground.txt2img import MAX_TIMESTEP
from playground.txt2img.evaluate import (
    EVAL_GUIDANCE,
    EVAL_STEPS,
    eval_sets,
    generate_for,
    score_set,
)

SETS = ("held_out", "two_objects")
PLAIN = "none"


def load_unet(folder: str):
    """The UNet of a pipeline folder (its unet/) or a UNet folder itself."""
    from diffusers import UNet2DConditionModel

    path = Path(folder)
    path = path / "unet" if (path / "unet" / "config.json").exists() else path
    return UNet2DConditionModel.from_pretrained(path, torch_dtype=torch.float32).eval()


def settings(guides: list[str], guidance: list[float], weights: list[float],
             max_ts: list[float]) -> list[dict]:
    """The plain pipeline at each guidance, then every guide × guidance × weight × max_t."""
    plain = [{"guide": PLAIN, "guidance": g, "weight": 0.0, "max_t": 0.0} for g in guidance]
    return plain + [{"guide": guide, "guidance": g, "weight": w, "max_t": t}
                    for guide, g, w, t in itertools.product(guides, guidance, weights, max_ts)]


def _key(row: dict) -> tuple:
    return (row["guide"], row["guidance"], row["weight"], row["max_t"], row["seed"], row["n"])


def done_rows(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def measure(pipe, setting: dict, guide, seed: int, n: int, steps: int) -> dict:
    row = {**setting, "seed": seed, "n": n, "steps": steps}
    start, sets = time.time(), eval_sets(n, seed)
    for name in SETS:
        scenes = sets[name]
        images = generate_for(pipe, scenes, steps=steps, guidance=setting["guidance"],
                              seed=seed, guide=guide, autoguidance=setting["weight"],
                              autoguidance_max_t=setting["max_t"])
        row[name] = score_set(scenes, images)
    row["seconds"] = round(time.time() - start, 1)
    return row


def choose(rows: list[dict], seeds: list[int], min_all: float) -> tuple[list[dict], dict | None]:
    """Per setting, the means over ``seeds`` (only settings measured on all of them); and the
    rule's winner (None when no setting reaches ``min_all`` on every seed set)."""
    by_setting: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        if row["seed"] in seeds:
            by_setting.setdefault(_key(row)[:4], {})[row["seed"]] = row
    table = []
    for key, per_seed in by_setting.items():
        if set(per_seed) != set(seeds):
            continue
        mean = {f"{s}_{m}": sum(per_seed[i][s][m] for i in seeds) / len(seeds)
                for s in SETS for m in ("colour+shape", "all")}
        worst_all = min(per_seed[i]["held_out"]["all"] for i in seeds)
        clean = sum(per_seed[i]["held_out"]["artefacts"]["clean"] for i in seeds) / len(seeds)
        named = dict(zip(("guide", "guidance", "weight", "max_t"), key, strict=True))
        table.append({**named, **mean,
                      "worst_held_out_all": worst_all, "held_out_clean": clean})
    eligible = [r for r in table if r["worst_held_out_all"] >= min_all]
    best = max(eligible, key=lambda r: (r["held_out_colour+shape"], r["two_objects_colour+shape"]),
               default=None)
    return table, best


def markdown(table: list[dict], best: dict | None) -> str:
    lines = ["| guide | g | w | t ≤ | held out c+s / all five | two objects c+s | clean |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        mark = "**" if r is best else ""
        lines.append(f"| {r['guide']} | {r['guidance']:g} | {r['weight']:g} | {r['max_t']:g} | "
                     f"{mark}{r['held_out_colour+shape']:.1%} / {r['held_out_all']:.1%}{mark} | "
                     f"{r['two_objects_colour+shape']:.1%} | {r['held_out_clean']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> tuple[list[dict], dict | None]:
    from diffusers import DiffusionPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the pipeline folder")
    parser.add_argument("--guide", action="append", default=[],
                        help="a guide: pipeline folder (its unet/) or UNet folder; repeatable")
    parser.add_argument("--guidance", type=float, action="append")
    parser.add_argument("--weight", type=float, action="append")
    parser.add_argument("--max-t", type=float, action="append")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=EVAL_STEPS)
    parser.add_argument("--min-all", type=float, default=0.92)
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines results file")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2 (the two-object set has n // 2 prompts)")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    for flag, values, low, high in (("--guidance", args.guidance, 0, 30),
                                    ("--weight", args.weight, 0, 10),
                                    ("--max-t", args.max_t, 0, MAX_TIMESTEP),
                                    ("--min-all", [args.min_all], 0, 1)):
        bad = [v for v in values or [] if not low <= v <= high]
        if bad:
            parser.error(f"{flag} must be between {low} and {high}, got {bad[0]:g}")
    for guide in args.guide:
        if not ((Path(guide) / "config.json").exists()
                or (Path(guide) / "unet" / "config.json").exists()):
            parser.error(f"--guide {guide}: neither a UNet folder nor a pipeline folder with "
                         "unet/ (no config.json there)")
    todo = settings(args.guide, args.guidance or [EVAL_GUIDANCE], args.weight or [2.0],
                    args.max_t or [600.0])
    rows = done_rows(args.out)
    have = {_key(r) for r in rows}
    pipe = DiffusionPipeline.from_pretrained(args.folder, torch_dtype=torch.float32)
    guides = {}
    for setting, seed in itertools.product(todo, args.seeds):
        if _key({**setting, "seed": seed, "n": args.n}) in have:
            continue
        name = setting["guide"]
        if name != PLAIN and name not in guides:
            guides[name] = load_unet(name)
        row = measure(pipe, setting, guides.get(name), seed, args.n, args.steps)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"{name} g{setting['guidance']:g} w{setting['weight']:g} t{setting['max_t']:g} "
              f"seed {seed}: held out c+s {row['held_out']['colour+shape']:.0%}, "
              f"two objects c+s {row['two_objects']['colour+shape']:.0%} ({row['seconds']} s)",
              flush=True)
    table, best = choose([r for r in rows if r["n"] == args.n], args.seeds, args.min_all)
    print(markdown(table, best))
    print("chosen:", json.dumps(best) if best else f"none reaches all five >= {args.min_all:.0%}")
    return table, best


if __name__ == "__main__":
    main()
