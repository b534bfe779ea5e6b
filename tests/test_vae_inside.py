"""The VAE's face map: PCA of every face's posterior mean, drawn; a map point decoded.

Known answers: the PCA of codes with planted directions; each face's map position is the
projection of its own posterior mean; decoding a face's own position with its full code (the
'nearest face' choice, or the inverse PCA of a 2-number code) gives its reconstruction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from playground.core import registry
from playground.core.errors import UserInputError
from playground.core.repro import read_png_record
from playground.vae import FAMILY, SHIPPED, inside, register_models
from playground.vae.codec import load_codec
from playground.vae.inference import adapt_face, heldout_faces
from playground.vae.model import ConvVAE
from playground.vae.pca import fit_pca
from playground.vae.render_map import person_colors
from tests.conftest import open_tab

register_models()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny(folder, name: str, latent_dim: int) -> str:
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=latent_dim, base_width=4, max_width=8)
    with torch.no_grad():  # larger weights than at init, so different codes decode differently
        for p in model.parameters():
            p.mul_(4)
    model.save_pretrained(folder)
    registry.register(registry.ModelEntry(name, FAMILY, path=folder))
    return name


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory) -> str:
    return _tiny(tmp_path_factory.mktemp("tiny4"), "tiny-map-4", 4)


@pytest.fixture(scope="module")
def tiny2(tmp_path_factory) -> str:
    return _tiny(tmp_path_factory.mktemp("tiny2"), "tiny-map-2", 2)


@pytest.fixture
def faces_folder(tmp_path, monkeypatch):
    """6 people × 3 random 'faces'; the split holds 5 people out, 1 trains."""
    rng = np.random.default_rng(0)
    for person in range(6):
        (tmp_path / f"p{person}").mkdir()
        for i in range(3):
            Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(
                tmp_path / f"p{person}" / f"{i}.png")
    monkeypatch.setenv("PLAYGROUND_FACES", str(tmp_path))
    return tmp_path


def _own_means(name: str, found: inside.LatentMap) -> torch.Tensor:
    """Each face's posterior mean, encoded one face at a time (N, D)."""
    codec = load_codec(name)
    return torch.cat([codec.encode(adapt_face(img, codec))[0] for img in found.faces.images])


def _reconstruction(name: str, image: np.ndarray) -> torch.Tensor:
    codec = load_codec(name)
    return codec.decode(codec.encode(adapt_face(image, codec))[0])[0]


def test_pca_finds_planted_directions_orthonormal_and_ordered():
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    u, v = basis[:, 0], basis[:, 1]
    a, b = torch.randn(2, 2000, 1, generator=gen, dtype=torch.float64)
    codes = 5 + 3 * a * u + 1 * b * v + 0.1 * torch.randn(2000, 6, generator=gen,
                                                           dtype=torch.float64)
    fit = fit_pca(codes, 2)
    assert torch.allclose(fit.components @ fit.components.T, torch.eye(2, dtype=torch.float64),
                          atol=1e-12)
    assert abs(float(fit.components[0] @ u)) > 0.999 and abs(float(fit.components[1] @ v)) > 0.99
    # variances 9, 1 and 6 × 0.01 of noise: PC1 ≈ 9 / 10.06, PC2 ≈ 1 / 10.06
    assert fit.explained[0] == pytest.approx(9 / 10.06, abs=0.02)
    assert fit.explained[1] == pytest.approx(1 / 10.06, abs=0.01)
    assert fit.std[0] == pytest.approx(3, rel=0.05)
    for row in fit.components:  # the sign rule: each direction's largest entry is positive
        assert row[row.abs().argmax()] > 0
    full = fit_pca(codes, 6)  # all directions: the inverse PCA gives the codes back
    assert torch.allclose(full.unproject(full.project(codes)), codes, atol=1e-10)
    assert float(full.explained.sum()) == pytest.approx(1.0)
    assert (full.explained[:-1] >= full.explained[1:]).all()


def test_each_face_sits_at_the_projection_of_its_posterior_mean(tiny4, faces_folder):
    found = inside.latent_map(registry.resolve(FAMILY, tiny4))
    fit = found.fit
    assert fit.components.shape == (2, 4)
    assert torch.allclose(fit.components @ fit.components.T, torch.eye(2, dtype=torch.float64),
                          atol=1e-10)
    assert 1 >= fit.explained[0] >= fit.explained[1] > 0
    mus = _own_means(tiny4, found).double()
    assert torch.allclose(found.coords, (mus - fit.center) @ fit.components.T, atol=1e-4)
    # training people and held-out people, the held-out ones as the face pickers name them
    assert len(found.faces.labels) == 18 and int(found.faces.held_out.sum()) == 15
    held = [lab for lab, h in zip(found.faces.labels, found.faces.held_out, strict=True) if h]
    assert held == heldout_faces().labels
    for pc1, pc2 in found.coords[:3].tolist():  # the picture's pixels map back to the plane
        assert found.frame.to_map(*found.frame.to_pixel(pc1, pc2)) == pytest.approx((pc1, pc2))


def test_decoding_a_faces_own_position_with_its_full_code_gives_its_reconstruction(
        tiny4, tiny2, faces_folder):
    found = inside.latent_map(registry.resolve(FAMILY, tiny4))
    for i in (0, 7, 17):
        pc1, pc2 = found.coords[i].tolist()
        out = inside.decode_map_point(tiny4, pc1, pc2, "nearest face")
        assert out.nearest == found.faces.labels[i] and out.distance == pytest.approx(0)
        recon = _reconstruction(tiny4, found.faces.images[i])
        assert torch.allclose(out.decoded, recon, atol=1e-5)
        # the map point alone drops the other two directions: not the face's reconstruction
        partial = inside.decode_map_point(tiny4, pc1, pc2, "map point")
        assert (partial.decoded - recon).abs().max() > 1e-3
    # a code of two numbers is all on the map: the map point is the full code
    found2 = inside.latent_map(registry.resolve(FAMILY, tiny2))
    assert torch.allclose(found2.fit.unproject(found2.coords), found2.codes, atol=1e-9)
    for i in (2, 11):
        out = inside.decode_map_point(tiny2, *found2.coords[i].tolist(), "map point")
        recon = _reconstruction(tiny2, found2.faces.images[i])
        assert torch.allclose(out.decoded, recon, atol=1e-5)


def test_map_picture_record_and_same_input_same_output(tiny4, faces_folder):
    a, b = inside.map_view(tiny4), inside.map_view(tiny4)
    assert a.image_png != b.image_png  # fresh files, identical pictures and records
    assert np.array_equal(np.asarray(Image.open(a.image_png)), np.asarray(Image.open(b.image_png)))
    record = read_png_record(a.image_png)
    assert record == a.record == b.record and record["model"] == tiny4
    found = inside.latent_map(registry.resolve(FAMILY, tiny4))
    assert record["params"]["explained_variance"] == pytest.approx(
        found.fit.explained.tolist(), abs=1e-6)
    assert (a.n_faces, a.n_held_out) == (18, 15) and f"{a.explained[0]:.1%}" in a.summary
    # the last point drawn (a held-out face) shows its person's colour, ringed in black
    image = np.asarray(Image.open(a.image_png).convert("RGB"))
    last = int(np.nonzero(found.faces.held_out)[0][-1])
    col, row = (round(v) for v in found.frame.to_pixel(*found.coords[last].tolist()))
    persons = found.faces.persons
    colour = person_colors(persons, set(persons[found.faces.held_out]))[int(persons[last])]
    assert tuple(image[row, col]) == colour
    assert image[row - 7:row - 3, col].max(axis=1).min() < 60  # a held-out person's ring
    one = inside.decode_map_point(tiny4, 0.1, -0.2, "map point")
    two = inside.decode_map_point(tiny4, 0.1, -0.2, "map point")
    assert np.array_equal(np.asarray(Image.open(one.image_png)),
                          np.asarray(Image.open(two.image_png)))
    assert read_png_record(one.image_png)["params"] == {
        "view": "latent map point", "pc1": 0.1, "pc2": -0.2, "code": "map point",
        "nearest_face": one.nearest, "map_faces": 18, "faces_hash": record["params"]["faces_hash"]}


def test_clear_errors(tiny4, faces_folder, tmp_path, monkeypatch):
    with pytest.raises(UserInputError, match="Code must be one of map point, nearest face"):
        inside.decode_map_point(tiny4, 0, 0, "average")
    with pytest.raises(UserInputError, match="PC1 must be between"):
        inside.decode_map_point(tiny4, 1e9, 0)
    with pytest.raises(UserInputError, match="PC2 must be a number"):
        inside.decode_map_point(tiny4, 0, "up")
    with pytest.raises(UserInputError, match="Click inside the map"):
        inside.map_point_at_pixel(tiny4, None)
    one = _tiny(tmp_path / "one", "tiny-map-1", 1)
    with pytest.raises(UserInputError, match="a 2-D map needs two"):
        inside.map_view(one)
    monkeypatch.setenv("PLAYGROUND_FACES", str(tmp_path / "nothing-here"))
    with pytest.raises(UserInputError, match="needs the face photos"):
        inside.map_view(tiny4)


def test_the_click_handler_decodes_the_face_under_the_pixel(tiny4, faces_folder):
    import gradio as gr

    from playground.vae.tab_inside import on_map, on_map_click

    picture, summary, drawn_for = on_map(tiny4)
    assert drawn_for == tiny4 and "PC1 explains" in summary and Image.open(picture).size[0] > 400
    found = inside.latent_map(registry.resolve(FAMILY, tiny4))
    col, row = found.frame.to_pixel(*found.coords[4].tolist())
    evt = gr.SelectData(None, {"index": [round(col), round(row)], "value": None})
    pc1, pc2, panel, info = on_map_click(tiny4, "nearest face", evt)
    assert (pc1, pc2) == pytest.approx(tuple(found.coords[4].tolist()), abs=found.frame.half / 100)
    assert found.faces.labels[4] in info and read_png_record(panel)["params"]["pc1"] == pc1
    with pytest.raises(gr.Error, match="Draw the map first"):
        on_map_click(None, "nearest face", evt)


def test_autoencoderkl_maps_the_heldout_faces(tmp_path, faces_folder):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                  norm_num_groups=4, sample_size=32).save_pretrained(tmp_path / "kl")
    registry.register(registry.ModelEntry("tiny-kl-map", FAMILY, path=tmp_path / "kl"))
    view = inside.map_view("tiny-kl-map")
    assert (view.n_faces, view.n_held_out) == (15, 15) and "AutoencoderKL" in view.summary
    found = inside.latent_map(registry.resolve(FAMILY, "tiny-kl-map"))
    assert found.codes.shape == (15, 4 * 16 * 16)
    out = inside.decode_map_point("tiny-kl-map", *found.coords[3].tolist(), "nearest face")
    assert out.decoded.shape == (3, 32, 32)
    assert torch.allclose(out.decoded, _reconstruction("tiny-kl-map", found.faces.images[3]),
                          atol=1e-4)


# ---- the shipped model, over the API and in the browser ------------------------------------

def _shipped_map() -> inside.LatentMap:
    return inside.latent_map(registry.resolve(FAMILY, SHIPPED))


# PC1 and PC2's shares of the variance of the 400 codes of weights/vae-olivetti (measured)
PINNED_EXPLAINED = (0.1434, 0.1238)


@pytest.mark.skipif(not (registry.WEIGHTS_DIR / SHIPPED / "model.safetensors").is_file(),
                    reason="no shipped weights")
def test_shipped_map_explained_variance_is_pinned():
    view = inside.map_view(SHIPPED)
    assert (view.n_faces, view.n_held_out) == (400, 50)
    assert view.explained == pytest.approx(PINNED_EXPLAINED, abs=2e-3)


def test_api_map_and_decode_a_position(client):
    picture, summary = client.predict(SHIPPED, api_name="/vae_map")[:2]
    assert Image.open(picture).size[0] > 400 and "PC1 explains" in summary
    assert read_png_record(picture)["params"]["faces"] == 400
    found = _shipped_map()
    i = int(np.nonzero(found.faces.held_out)[0][0])
    panel, info = client.predict(SHIPPED, *found.coords[i].tolist(), "nearest face",
                                 api_name="/vae_map_decode")
    assert found.faces.labels[i] in info and "held-out person" in info
    assert read_png_record(panel)["params"]["nearest_face"] == found.faces.labels[i]
    with pytest.raises(Exception, match="PC1 must be between"):
        client.predict(SHIPPED, 1e6, 0, "map point", api_name="/vae_map_decode")


def _isolated_face(found: inside.LatentMap) -> int:
    """The face farthest from its nearest neighbour on the map (a click cannot miss it)."""
    d = torch.cdist(found.coords, found.coords) + torch.eye(len(found.coords)) * 1e9
    return int(d.min(1).values.argmax())


def test_browser_draws_the_map_and_a_click_decodes_a_face(page):
    open_tab(page, "VAE faces")
    page.get_by_text("Map of every face's code (PCA)").click()
    page.locator("#vae-map-draw").click()
    page.wait_for_selector("#vae-map img", timeout=60_000)
    page.locator("#vae-map-info").get_by_text("PC1 explains").wait_for()
    found = _shipped_map()
    i = _isolated_face(found)
    col, row = found.frame.to_pixel(*found.coords[i].tolist())
    img = page.locator("#vae-map img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    natural = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1], 1)  # as gradio's click
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    page.mouse.click(left + col * scale, top + row * scale)
    page.wait_for_selector("#vae-map-decoded img", timeout=60_000)
    page.locator("#vae-map-point-info").get_by_text(found.faces.labels[i]).wait_for()
    assert page.locator("#vae-map-decoded img").first.bounding_box()["height"] > 50
