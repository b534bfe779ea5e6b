"""Pinned outputs of the shipped weights/vae-olivetti (diffusers' ``expected_slice`` habit).

A few numbers of fixed-seed outputs, recorded before the issue-25 refactor: an encoding of a
fixed held-out face, a decoded prior sample, a sample and a spherical interpolation through the
tab's own request functions. A silent numeric change (a refactor, an upgrade) fails here.
Uses the bundled faces (``assets/olivetti_faces.npz``), so it runs on any machine with the
weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.core import registry
from playground.data.faces import BUNDLED_FACES, load_faces, split_by_person
from playground.vae import SHIPPED, register_models

FOLDER = registry.WEIGHTS_DIR / SHIPPED
ATOL = 2e-3  # float32 on the CPU; generous enough for another BLAS, tight enough for a change
pytestmark = pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(),
                                reason="no shipped weights")
register_models()


@pytest.fixture(autouse=True)
def bundled_faces(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_FACES", str(BUNDLED_FACES))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    from playground.vae.model import ConvVAE

    return ConvVAE.from_pretrained(str(FOLDER)).eval()


def test_encoding_of_the_first_heldout_face(model):
    _, val = split_by_person(load_faces(BUNDLED_FACES), 5, 0)
    assert int(val.persons[0]) == 10
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(val.images[:1])[:, None])
    expected_mu = [-0.87772, 0.81971, 1.27339, -3.79405, 0.10438, -3.77385]
    assert mu[0, :6].tolist() == pytest.approx(expected_mu, abs=ATOL)
    assert logvar[0, :3].tolist() == pytest.approx([-4.99434, -5.32734, -5.13290], abs=ATOL)


def test_decoded_prior_sample(model):
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = model.decode(z)  # (1, 1, 64, 64)
    expected = [0.43288, 0.43835, 0.44807, 0.45662, 0.46226, 0.46033]
    assert image[0, 0, 32, 28:34].tolist() == pytest.approx(expected, abs=ATOL)
    assert image.mean().item() == pytest.approx(0.48637, abs=ATOL)


def test_sample_request_pixels():
    from playground.vae.inference import sample_faces

    image = np.asarray(sample_faces(SHIPPED, seed=0, n=2, temperature=1.0).images[0])
    assert image.shape == (128, 128)  # 64 px shown at 2x
    row = image[64, 56:68:2].astype(int)
    assert np.abs(row - [110, 112, 114, 116, 118, 117]).max() <= 1
    assert image.mean() == pytest.approx(124.0254, abs=0.05)


def test_spherical_interpolation_and_reconstruction_requests():
    from playground.vae.inference import heldout_faces, interpolate_faces, reconstruct_face

    labels = heldout_faces().labels
    assert labels[0] == "person 10 · photo 0" and labels[10] == "person 12 · photo 0"
    out = interpolate_faces(SHIPPED, labels[0], labels[10], frames=5, mode="spherical")
    frames, steps = out.frames, out.steps
    expected = [0.71827, 0.71842, 0.71380, 0.70013, 0.67879, 0.65499]
    assert frames[2, 0, 32, 28:34].tolist() == pytest.approx(expected, abs=ATOL)
    assert frames[2].mean().item() == pytest.approx(0.53218, abs=ATOL)
    assert steps.tolist() == pytest.approx([0.049135, 0.046883, 0.043373, 0.042732], abs=ATOL)
    rec = reconstruct_face(SHIPPED, face=labels[0])
    mse, bpd = rec.mse, rec.bits_per_dim
    assert mse == pytest.approx(0.0080717, abs=2e-5)
    assert bpd == pytest.approx(6.68481, abs=5e-3)
