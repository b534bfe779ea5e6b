"""Pinned outputs of the shipped GAN models (diffusers' ``expected_slice`` habit): a few numbers
of a fixed-seed output, so that a silent numeric change (a refactor, a torch upgrade) fails
here. The face-id pins date from before the issue-25 refactor; the generator's were recorded
when issue 27's generator (the EMA at step 4000) replaced the previous one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.core.registry import WEIGHTS_DIR
from playground.data.faces import BUNDLED_FACES, load_faces
from playground.gan import SHIPPED, register_models
from playground.gan.augment import faces_to_tensor
from playground.gan.faceid import FaceIdNet, extract_features
from playground.gan.inference import generate, latent, sample_faces
from playground.gan.model import Generator

# generate(G, [latent(0), latent(1)], psi): row 32, columns 24..31 of face 0; row 20,
# columns 30..33 of face 1; the mean pixel of both faces (all in [0, 1])
EXPECTED_G = {
    1.0: ([0.289106, 0.208614, 0.389427, 0.461552, 0.476971, 0.537378, 0.616000, 0.603628],
          [0.308911, 0.369208, 0.537226, 0.595055], 0.475108),
    0.5: ([0.238767, 0.188551, 0.292820, 0.368459, 0.400922, 0.429158, 0.447732, 0.412664],
          [0.320276, 0.346189, 0.396867, 0.401324], 0.408858),
}
# RMS pixel distance of faces 0 and 1 to their nearest training photo (the tab's gallery)
EXPECTED_NEAREST = [0.100681, 0.107875]
# gan-face-id features of bundled photos 0 and 137: the first 8 numbers and the norms
EXPECTED_FACE_ID = ([0.0, 3.097069, 0.0, 3.264643, 0.0, 0.0, 0.063189, 0.084762],
                    [0.0, 3.941724, 2.839517, 0.0, 0.0, 0.0, 0.0, 0.0], [12.171819, 12.937367])


@pytest.fixture(scope="module")
def generator() -> Generator:
    return Generator.from_pretrained(str(WEIGHTS_DIR / SHIPPED)).eval()


@pytest.mark.parametrize("psi", sorted(EXPECTED_G))
def test_shipped_generator_pinned(generator, psi):
    z = torch.stack([latent(s, generator.nz) for s in (0, 1)])  # (2, 100)
    out = generate(generator, z, psi)  # (2, 1, 64, 64)
    row0, row1, mean = EXPECTED_G[psi]
    assert out.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(out[0, 0, 32, 24:32].numpy(), row0, atol=1e-4)
    np.testing.assert_allclose(out[1, 0, 20, 30:34].numpy(), row1, atol=1e-4)
    assert out.mean().item() == pytest.approx(mean, abs=1e-5)


def test_shipped_sampling_request_pinned():
    register_models()
    out = sample_faces(SHIPPED, seed=0, n=2)
    np.testing.assert_allclose(out.nearest.distances, EXPECTED_NEAREST, atol=1e-5)


def test_shipped_face_id_embedding_pinned():
    model = FaceIdNet.from_pretrained(str(WEIGHTS_DIR / "gan-face-id")).eval()
    faces = load_faces(BUNDLED_FACES)
    feats = extract_features(model, faces_to_tensor(faces.images[[0, 137]], 64))  # (2, 64)
    first, second, norms = EXPECTED_FACE_ID
    assert feats.shape == (2, 64)
    np.testing.assert_allclose(feats[0, :8], first, atol=1e-4)
    np.testing.assert_allclose(feats[1, :8], second, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), norms, atol=1e-4)
