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


@benchmark("vae: face map of 400 codes, cold (request) / raw encode+SVD")
def face_map() -> dict:
    from playground import vae
    from playground.vae import inside
    from playground.vae.inference import all_faces, load_codec

    vae.register_models()
    faces = all_faces()
    if not len(faces):
        raise RuntimeError("needs assets/olivetti_faces.npz (or $PLAYGROUND_FACES)")
    model = load_codec(vae.SHIPPED).model
    x = torch.from_numpy(faces)[:, None]  # (400, 1, 64, 64)

    def raw():
        with torch.no_grad():
            mu = torch.cat([model.encode(chunk)[0] for chunk in x.split(50)]).double()
            torch.linalg.svd(mu - mu.mean(0), full_matrices=False)

    def request():
        inside._MAPS.clear()  # cold: encode every face again, as for a new model
        inside.map_view(vae.SHIPPED)
    ours, reference = best_of_pair(request, raw, repeats=5)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "ours adds face loading, the picture (400 points) and the PNG + record"}
