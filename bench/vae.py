"""VAE row: the interpolation request vs calling the encoder and decoder directly."""

from __future__ import annotations

import torch

from bench.registry import benchmark, best_of_pair

FRAMES = 16


@benchmark("vae: interpolate 2 faces, 16 frames (request) / raw encode+decode")
def interpolation() -> dict:
    from playground import vae
    from playground.vae.inference import heldout_faces, interpolate_faces, load_codec

    vae.register_models()
    faces = heldout_faces()
    labels = faces.labels
    if not labels:
        raise RuntimeError("needs assets/olivetti_faces.npz (or $PLAYGROUND_FACES)")
    model = load_codec(vae.SHIPPED).model
    x = torch.from_numpy(faces.images[[0, 10]])[:, None]  # (2, 1, 64, 64)
    ts = torch.linspace(0, 1, FRAMES)[:, None]

    def raw():
        with torch.no_grad():
            mu, _ = model.encode(x)
            model.decode(torch.lerp(mu[0], mu[1], ts))  # (FRAMES, 1, 64, 64)
    ours, reference = best_of_pair(
        lambda: interpolate_faces(vae.SHIPPED, labels[0], labels[10], frames=FRAMES,
                                  mode="linear"), raw, repeats=5)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "ours adds input checks, face loading, PNG strip + record and a GIF"}
