"""The shipped weights/vae-olivetti: held-out -ELBO recomputed, smooth interpolations.

Reads the bundled faces (assets/olivetti_faces.npz, the same pixels as olivettifaces.mat) or
$PLAYGROUND_FACES.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from playground.core import registry
from playground.data.faces import faces_source
from playground.vae import SHIPPED

FOLDER = registry.WEIGHTS_DIR / SHIPPED
pytestmark = [
    pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(), reason="no shipped weights"),
    pytest.mark.skipif(faces_source() is None, reason="no face data on this machine"),
]


@pytest.fixture(scope="module")
def shipped():
    from playground.data.faces import load_faces
    from playground.vae.model import ConvVAE
    from playground.vae.split import faces_to_tensor, split_faces

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    model = ConvVAE.from_pretrained(str(FOLDER)).eval()
    _, val = split_faces(load_faces(faces_source()))
    yield model, faces_to_tensor(val.images), val.persons
    torch.set_num_threads(n)


def test_heldout_bits_per_dim_matches_the_model_card(shipped):
    from playground.vae.card import EVAL_SAMPLES, EVAL_SEED
    from playground.vae.likelihood import evaluate_elbo

    model, x, _ = shipped
    stated = json.loads((FOLDER / "metrics.json").read_text())
    assert f"{stated['bits_per_dim']:.4f}" in (FOLDER / "README.md").read_text()
    got = evaluate_elbo(model, x, samples=EVAL_SAMPLES, seed=EVAL_SEED)
    assert got["bits_per_dim"] == pytest.approx(stated["bits_per_dim"], abs=0.01)
    assert got["mse"] == pytest.approx(stated["mse"], rel=0.02)
    assert got["kl_nats"] == pytest.approx(stated["kl_nats"], rel=0.02)
    assert got["bits_per_dim"] < 6.5  # well below uniform noise (8 bits/dim)


def test_interpolation_between_two_heldout_people_is_smooth(shipped):
    from playground.vae.inference import frame_steps, interpolate_latents

    model, x, persons = shipped
    a, b = (int(np.flatnonzero(persons == p)[0]) for p in np.unique(persons)[:2])
    mu, _ = model.encode(x[[a, b]])
    with torch.no_grad():
        for mode in ("linear", "spherical"):
            steps = frame_steps(model.decode(interpolate_latents(mu[0], mu[1], 16, mode)))
            assert steps.max() <= 3 * np.median(steps), (mode, steps)
            assert steps.min() > 0  # the face really changes along the way
