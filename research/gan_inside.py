"""Figures behind the GAN tab's inside views (latent directions, find this face).

`OMP_NUM_THREADS=1 python -m research.gan_inside [--quick]` prints JSON and writes
research/gan-inside.json. Everything runs the product code: ``find.build_run`` + the shared
``train_loop`` for each search (as the worker does), ``inside.lookalikes`` for who a face looks
like, ``directions.latent_directions`` for SeFa / PCA.

1. Find this face: RMS pixel error (0-1) of the best of 64 starting latents and after the search,
   on (a) Olivetti photos (all seen in training: the shipped GAN used all 400), (b) faces of
   people the GAN never saw (the optional pip package's colour DigiFace GAN, made grey), (c) the
   GAN's own faces (a perfect answer exists); and whether the found face's nearest photo is the
   target's person.
2. Directions: for 100 seeds, the top-5 directions at strength ±3: how much the face changes
   (RMS pixels) and how often its nearest photo changes person, against random orthonormal
   directions at the same strength; how much SeFa and PCA agree.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from playground.core import registry
from playground.core.training import train_loop
from playground.gan import FAMILY, SHIPPED, register_models
from playground.gan.directions import latent_directions
from playground.gan.find import build_run
from playground.gan.inference import generate, latent, load_generator, training_faces
from playground.gan.inside import lookalikes

OUT = Path(__file__).with_name("gan-inside.json")


def search(target: np.ndarray, steps: int, mode: str, id_weight: float) -> dict:
    source = str(registry.resolve(FAMILY, SHIPPED).path)
    with tempfile.TemporaryDirectory() as tmp:
        loop, task = build_run(tmp, source, SHIPPED, target, steps, mode, id_weight, 0, "cpu",
                               {"params": {}})
        train_loop(loop, task)
        meta = json.loads((Path(tmp) / "found.json").read_text())
        from PIL import Image

        found = np.asarray(Image.open(Path(tmp) / "found.png"), np.float32)[::2, ::2] / 255
    meta["found"] = found
    return meta


def inversion(targets: dict[str, np.ndarray], persons: dict[str, int | None], steps: int,
              mode: str, id_weight: float) -> dict:
    rows = []
    t0 = time.perf_counter()
    for name, target in targets.items():
        meta = search(target, steps, mode, id_weight)
        who = lookalikes(torch.from_numpy(meta["found"])[None, None])
        rows.append({"target": name, "rms_start": meta["rms_start"],
                     "rms_final": meta["rms_final"],
                     "same_person": None if persons[name] is None
                     else who[0].person == persons[name],
                     "same_identity": None if persons[name] is None
                     else who[0].id_person == persons[name]})
    start = np.array([r["rms_start"] for r in rows])
    final = np.array([r["rms_final"] for r in rows])
    known = [r for r in rows if r["same_person"] is not None]
    return {"n": len(rows), "steps": steps, "mode": mode, "id_weight": id_weight,
            "rms_start_median": float(np.median(start)),
            "rms_final_median": float(np.median(final)),
            "rms_final_max": float(final.max()), "improved": int((final < start).sum()),
            "same_person_share": (float(np.mean([r["same_person"] for r in known]))
                                  if known else None),
            "same_identity_share": (float(np.mean([r["same_identity"] for r in known]))
                                    if known else None),
            "seconds_per_search": (time.perf_counter() - t0) / len(rows)}


def digiface_faces(n: int) -> dict[str, np.ndarray]:
    """Faces of people the Olivetti GAN never saw: the colour DigiFace GAN, made grey."""
    from playground.gan import PRETRAINED_NAME

    if PRETRAINED_NAME not in registry.choices(FAMILY):
        return {}
    colour = load_generator(PRETRAINED_NAME)
    images = generate(colour, torch.stack([latent(s, colour.nz) for s in range(n)]))
    return {f"digiface seed {s}": images[s].mean(0, keepdim=True).numpy() for s in range(n)}


def _changes(model, z: torch.Tensor, vectors: torch.Tensor, strength: float) -> dict:
    """Edit every z by ±strength along each vector: how often the nearest photo's person (and
    the face-id person) changes, and the mean RMS pixel change of the face."""
    base = generate(model, z)
    who = lookalikes(base)
    changes = id_changes = 0
    rms = []
    for v in vectors:
        for sign in (-1, 1):
            edited = generate(model, z + sign * strength * v.float())
            after = lookalikes(edited)
            changes += sum(a.person != b.person for a, b in zip(who, after, strict=True))
            id_changes += sum(a.id_person != b.id_person for a, b in zip(who, after, strict=True))
            rms.append(float(((edited - base) ** 2).flatten(1).mean(1).sqrt().mean()))
    total = len(z) * len(vectors) * 2
    return {"strength": round(strength, 3), "person_change_share": changes / total,
            "identity_change_share": id_changes / total, "mean_rms_change": float(np.mean(rms))}


def direction_effects(method: str, seeds: int, strength: float, top: int) -> dict:
    """Top directions vs random orthonormal ones at the same strength, and at the strength
    that changes the faces as much in pixels (is it the size of the change, or its kind?)."""
    model = load_generator(SHIPPED)
    dirs = latent_directions(model, method)
    rand = torch.linalg.qr(torch.randn(model.nz, top, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))[0].T
    z = torch.stack([latent(s, model.nz) for s in range(seeds)])  # (N, nz)
    out = {method: _changes(model, z, dirs.vectors[:top], strength),
           "random": _changes(model, z, rand, strength)}
    scale = out[method]["mean_rms_change"] / out["random"]["mean_rms_change"]
    out["random_matched_pixels"] = _changes(model, z, rand, strength * scale)
    out["top_ratios"] = [round(float(r), 4) for r in dirs.ratios[:top]]
    out["ratio_sum_all"] = round(float(dirs.ratios.sum()), 4)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    register_models()
    n = 6 if args.quick else 10
    faces = training_faces(64)
    idx = [10 * p + p % 10 for p in range(0, 40, 40 // n)][:n]
    photos = {f"photo {i}": faces.images[i][None] for i in idx}
    photo_people = {f"photo {i}": int(faces.persons[i]) for i in idx}
    model = load_generator(SHIPPED)
    own = {f"G seed {s}": generate(model, latent(s, model.nz)[None])[0].numpy()
           for s in range(10_000, 10_000 + n // 2)}
    unseen = digiface_faces(n // 2)
    report: dict = {"directions": {m: direction_effects(m, 20 if args.quick else 100, 3.0, 5)
                                   for m in ("sefa", "pca")}}
    sefa, pca = (latent_directions(model, m).vectors[:5] for m in ("sefa", "pca"))
    report["directions"]["sefa_pca_abs_cos_top5"] = [round(float(x), 3)
                                                     for x in (sefa * pca).sum(1).abs()]
    report["find"] = {}
    for steps, mode, id_weight in ((40, "z", 0.1), (300, "z", 0.1), (300, "z", 0.0),
                                   (300, "z+layer1", 0.1)):
        key = f"{steps} steps, {mode}, id {id_weight}"
        report["find"][key] = {
            "olivetti_photos": inversion(photos, photo_people, steps, mode, id_weight),
            "unseen_digiface": inversion(unseen, dict.fromkeys(unseen), steps, mode, id_weight)
            if unseen else None,
            "own_samples": inversion(own, dict.fromkeys(own), steps, mode, id_weight)}
        if args.quick:
            break
    text = json.dumps(report, indent=1)
    print(text)
    if not args.quick:
        OUT.write_text(text)
    return report


if __name__ == "__main__":
    main()
