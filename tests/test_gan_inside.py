"""GAN "inside" views: SeFa and PCA directions, edits with lookalikes, "find this face" and
interpolation from a found face; known answers on tiny generators, the shipped model, a model
trained in the app and the colour model (the API and the browser: test_gan_inside_ui.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from playground.core import registry, repro
from playground.core.errors import UserInputError
from playground.core.training import train_loop
from playground.gan import (
    FAMILY,
    PRETRAINED_NAME,
    SHIPPED,
    pretrained_package_dir,
    register_models,
)
from playground.gan.codes import META_FILE, load_found, render
from playground.gan.directions import (
    edit_latent,
    first_layer_matrix,
    latent_directions,
    pca_directions,
    sefa_directions,
)
from playground.gan.find import build_run, start_find
from playground.gan.inference import generate, latent, load_generator, sample_faces
from playground.gan.inside import edit_along_directions, interpolate_codes
from playground.gan.model import Generator

register_models()


def tiny_generator(seed: int = 0, nz: int = 8) -> Generator:
    torch.manual_seed(seed)
    return Generator(nz=nz, ngf=4, nc=1, image_size=32).eval()


# ---- directions: known answers on tiny generators --------------------------------------------

def test_first_layer_matrix_maps_z_to_the_first_layer_output():
    g = tiny_generator()
    z = torch.randn(5, 8)
    w = first_layer_matrix(g)  # (C·4·4, nz)
    out = g.main[0](z[:, :, None, None]).flatten(1).double()
    assert w.shape == (g.main[0].out_channels * 16, 8)
    assert torch.allclose(z.double() @ w.T, out, atol=1e-6)
    # a padded kernel on a 1x1 input is cropped: the matrix must follow
    g.main[0] = nn.ConvTranspose2d(8, 3, 6, 1, 1, bias=False)
    out = g.main[0](z[:, :, None, None]).flatten(1).double()
    assert torch.allclose(z.double() @ first_layer_matrix(g).T, out, atol=1e-6)


def test_sefa_directions_are_the_top_eigenvectors_of_wtw():
    g = tiny_generator(1)
    dirs = sefa_directions(g)
    weight = g.main[0].weight.detach().double()  # (nz, C, 4, 4)
    w = weight.reshape(8, -1).T
    values, vectors = torch.linalg.eigh(w.T @ w)  # ascending
    assert torch.allclose(dirs.vectors @ dirs.vectors.T, torch.eye(8, dtype=torch.float64),
                          atol=1e-10)  # orthonormal
    assert torch.all(dirs.values[:-1] >= dirs.values[1:])  # strongest first
    assert torch.allclose(dirs.values, values.flip(0), rtol=1e-9, atol=1e-12)
    dots = (dirs.vectors * vectors.flip(1).T).sum(1).abs()  # same vectors up to sign
    assert torch.allclose(dots, torch.ones(8, dtype=torch.float64), atol=1e-8)
    # the first direction changes the first layer's output more than any random direction
    rand = torch.nn.functional.normalize(torch.randn(200, 8, dtype=torch.float64), dim=1)
    assert (w @ dirs.vectors[0]).norm() >= (rand @ w.T).norm(dim=1).max()
    assert dirs.ratios.sum().item() == pytest.approx(1.0)


def test_pca_directions_are_orthonormal_and_ordered_by_explained_variance():
    g = tiny_generator(2)
    dirs = pca_directions(g, n_samples=800)
    assert dirs.vectors.shape == (8, 8)
    assert torch.allclose(dirs.vectors @ dirs.vectors.T, torch.eye(8, dtype=torch.float64),
                          atol=1e-10)
    assert torch.all(dirs.values[:-1] >= dirs.values[1:]) and dirs.values[-1] >= 0
    assert 0.2 < dirs.ratios.sum() < 1.0  # ReLU: a linear fit explains part, not all
    again = pca_directions(g, n_samples=800)
    assert torch.equal(again.vectors, dirs.vectors)  # fixed samples: the same directions


def test_pca_of_a_linear_first_block_is_sefa():
    """Without batch norm and ReLU the regression recovers W exactly: PCA = SeFa."""
    g = tiny_generator(3)
    g.main[1], g.main[2] = nn.Identity(), nn.Identity()
    pca, sefa = pca_directions(g, n_samples=800), sefa_directions(g)
    dots = (pca.vectors * sefa.vectors).sum(1).abs()
    assert torch.allclose(dots, torch.ones(8, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(pca.values, sefa.values, rtol=1e-4)
    assert pca.ratios.sum().item() == pytest.approx(1.0, abs=0.1)  # sample vs true covariance


def test_directions_refuse_a_generator_without_a_linear_first_layer():
    g = tiny_generator()
    g.main[0] = nn.Conv2d(8, 4, 1)
    with pytest.raises(UserInputError, match="first layer"):
        latent_directions(g, "sefa")
    with pytest.raises(UserInputError, match="sefa"):
        latent_directions(tiny_generator(), "ica")


# ---- editing with the shipped model ----------------------------------------------------------

def _pixels(image) -> np.ndarray:
    return np.asarray(Image.open(image) if isinstance(image, str) else image)


def test_strength_zero_gives_the_unedited_face_exactly():
    z = latent(3, 100)
    dirs = sefa_directions(tiny_generator(nz=100))
    assert torch.equal(edit_latent(z, dirs, [(1, 0.0), (5, 0.0)]), z)  # bit for bit
    out = edit_along_directions(SHIPPED, "seed", 3, "sefa", [(1, 0.0), (2, 0.0)])
    assert np.array_equal(_pixels(out.faces[0]), _pixels(out.faces[1]))
    plain = sample_faces(SHIPPED, seed_list="3")  # the sampling view's face of seed 3
    assert np.abs(_pixels(out.faces[0]).astype(int) - _pixels(plain.images[0])).max() <= 1
    assert out.walks == [] and out.walk_png is None and out.person_changed is False


def test_same_seed_same_edit_and_a_record_that_says_how():
    picks = [(1, 4.0), (3, -2.5)]
    a = edit_along_directions(SHIPPED, "seed", 7, "pca", picks, 5)
    b = edit_along_directions(SHIPPED, "seed", 7, "pca", picks, 5)
    assert np.array_equal(_pixels(a.pair_png), _pixels(b.pair_png))
    assert np.array_equal(_pixels(a.walk_png), _pixels(b.walk_png))
    record = repro.read_png_record(a.walk_png)
    assert record == a.record and record["seed"] == 7
    assert record["params"] == {"method": "pca", "directions": [[1, 4.0], [3, -2.5]],
                                "frames": 5, "start": "seed 7"}
    assert not np.array_equal(_pixels(a.faces[0]), _pixels(a.faces[1]))  # it did edit


def test_an_edit_shows_each_walk_with_the_nearest_photo_under_every_face():
    out = edit_along_directions(SHIPPED, "seed", 0, "sefa", [(1, 4.0), (2, -4.0)], 5)
    assert [w.strengths for w in out.walks] == [[-4.0, -2.0, 0.0, 2.0, 4.0],
                                                 [4.0, 2.0, 0.0, -2.0, -4.0]]
    assert all(len(w.who) == 5 and 0 <= w.person_changes <= 4 for w in out.walks)
    assert all(0 <= p < 40 for w in out.walks for p in w.people)
    assert out.who[0].id_person is not None and 0 < out.who[0].distance < 0.3
    # 5 columns of 64 px faces (2 px gaps), 4 rows (faces, photos, faces, photos), enlarged 2x
    assert Image.open(out.walk_png).size == (2 * (5 * 66 - 2), 2 * (4 * 66 - 2))
    rows = out.table()
    assert [r[0] for r in rows] == [1, 2] and rows[0][1] >= rows[1][1]
    # the middle of each walk is the start face itself (strength 0)
    walk = _pixels(out.walk_png)[:128, 2 * 2 * 66: 2 * 2 * 66 + 128].astype(int)
    assert np.abs(walk - _pixels(out.faces[0])).max() <= 1


@pytest.mark.parametrize("kwargs,message", [
    ({"picks": [(0, 1.0)]}, "between 1 and 100"),
    ({"picks": [(101, 1.0)]}, "between 1 and 100"),
    ({"picks": [(1.5, 1.0)]}, "whole number"),
    ({"picks": [(1, 11)]}, "strength must be between -10"),
    ({"picks": [(1, "x")]}, "strength must be a number"),
    ({"picks": [(2, 1.0), (2, -1.0)]}, "picked twice"),
    ({"frames": 2}, "Faces per walk"),
    ({"method": "ica"}, "'sefa' or 'pca'"),
    ({"seed": -1}, "between 0"),
    ({"start": "found nothing (abc)"}, "No found face called"),
])
def test_edit_bad_input(kwargs, message):
    args = {"start": "seed", "seed": 0, "method": "sefa", "picks": [(1, 1.0)], "frames": 5}
    with pytest.raises(UserInputError, match=message):
        edit_along_directions(SHIPPED, **(args | kwargs))


def test_empty_direction_rows_are_ignored():
    out = edit_along_directions(SHIPPED, "seed", 1, "sefa", [(None, 3.0), (2, 2.0), ("", 0)])
    assert [w.index for w in out.walks] == [2]


# ---- find this face --------------------------------------------------------------------------

def _photo(index: int) -> np.ndarray:
    from playground.gan.inference import training_faces

    return training_faces(64).images[index][None]  # (1, 64, 64) in [0, 1]


def _search(tmp_path, target, steps, seed=0, mode="z", id_weight=0.1, model=SHIPPED) -> dict:
    """One search in this process (the worker's own builder and loop)."""
    loop, task = build_run(str(tmp_path), registry.resolve(FAMILY, model).source, model,
                           target, steps, mode, id_weight, seed, "cpu", {"params": {}})
    train_loop(loop, task)
    return json.loads((tmp_path / META_FILE).read_text())


def test_find_this_face_lowers_the_reconstruction_error(tmp_path):
    """Photo 123 (person 12; seen in training: the shipped GAN used all 400 photos). 40 steps:
    RMS 0.117 -> 0.098 here; the closest 5 % of same-person photo pairs are 0.067 apart."""
    meta = _search(tmp_path, _photo(123), steps=40)
    assert meta["rms_final"] < 0.105 and meta["rms_final"] < 0.9 * meta["rms_start"], meta
    assert meta["id_final"] < meta["id_start"]
    from playground.gan.inside import lookalikes

    found = np.asarray(Image.open(tmp_path / "found.png"), np.float32)[::2, ::2] / 255
    # face-id places the found face on the target's person (its nearest photo in pixels, after
    # only 40 steps, is person 14: 0.097 away, no nearer than two photos of one person)
    assert lookalikes(torch.from_numpy(found)[None, None])[0].id_person == 12


@pytest.mark.skipif(pretrained_package_dir() is None, reason="gan-face-generate not installed")
def test_find_this_face_on_a_face_the_gan_never_saw(tmp_path):
    """Held out: a DigiFace face (synthetic people, another data set) from the optional colour
    GAN, made grey. 40 steps: RMS 0.253 -> 0.151 here."""
    colour = load_generator(PRETRAINED_NAME)
    face = generate(colour, latent(2, colour.nz)[None])[0].mean(0, keepdim=True).numpy()
    meta = _search(tmp_path, face, steps=40)
    assert meta["rms_final"] < 0.85 * meta["rms_start"], meta


def test_find_this_face_is_reproducible(tmp_path):
    from safetensors.torch import load_file

    a = _search(tmp_path / "a", _photo(5), steps=8, seed=3, mode="z+layer1")
    b = _search(tmp_path / "b", _photo(5), steps=8, seed=3, mode="z+layer1")
    assert a["rms_final"] == b["rms_final"]
    za, zb = (load_file(str(tmp_path / d / "code.safetensors")) for d in "ab")
    assert torch.equal(za["z"], zb["z"]) and torch.equal(za["offset"], zb["offset"])


@pytest.mark.parametrize("kwargs,message", [
    ({"steps": 0}, "Steps"), ({"steps": 10**6}, "Steps"), ({"mode": "w"}, "Optimise"),
    ({"id_weight": -1}, "Face-id weight"), ({"photo": 400}, "Photo number"),
    ({"photo": 1.5}, "whole number"), ({"device": "tpu"}, "Device"), ({"seed": "x"}, "Seed"),
])
def test_find_bad_input(kwargs, message):
    args = {"photo": 0, "steps": 10, "mode": "z", "id_weight": 0.1, "seed": 0, "device": "cpu"}
    with pytest.raises(UserInputError, match=message):
        start_find(SHIPPED, **(args | kwargs))


def test_find_refuses_bad_uploads(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    Image.new("L", (8, 8)).save(tmp_path / "tiny.png")
    Image.new("L", (5000, 4000)).save(tmp_path / "huge.png")
    for name, message in [("notes.txt", "not an image"), ("tiny.png", "at least 16"),
                          ("huge.png", "megapixels"), ("missing.png", "could not be found")]:
        with pytest.raises(UserInputError, match=message):
            start_find(SHIPPED, upload=str(tmp_path / name), steps=5)


def test_found_face_edits_and_interpolates_like_a_seed(tmp_path):
    """The live path: a worker finds the face, the code is registered for this session only,
    then serves as the start of an edit and as an interpolation end."""
    from playground.core import sessions
    from playground.gan.find import found_face

    face = tmp_path / "face.png"
    Image.fromarray((_photo(42)[0] * 255).astype(np.uint8)).resize((150, 150)).save(face)
    with sessions.use_session("gan-inside-a"):
        run = start_find(SHIPPED, upload=str(face), steps=30, mode="z+layer1", seed=1)
        assert run.done.wait(120) and run.error is None, run.error
        out = found_face(run.result)
        assert out.rms_final < out.rms_start and run.result.startswith("found upload sha256:")
        assert repro.read_png_record(out.picture_png)["params"]["target"].startswith("upload")
        code = load_found(run.result, registry.resolve(FAMILY, SHIPPED))
        assert code.offset is not None and code.z.shape == (100,)
        edit = edit_along_directions(SHIPPED, run.result, 0, "sefa", [(1, 0.0)])
        found_pixels = np.asarray(Image.open(out.picture_png))[:128, 132:260]
        assert np.abs(_pixels(edit.faces[0]).astype(int) - found_pixels).max() <= 1
        strip = interpolate_codes(SHIPPED, run.result, 0, "seed", 5, frames=4, mode="linear")
        assert strip.record["params"]["a"]["start"] == f"found {run.result!r}"
        last = _pixels(strip.strip_png)[:, -64:].astype(int)
        plain = _pixels(sample_faces(SHIPPED, seed_list="5").images[0])[::2, ::2]
        assert np.abs(last - plain).max() <= 1  # ends at seed 5
    with sessions.use_session("gan-inside-b"), pytest.raises(UserInputError, match="No found"):
        edit_along_directions(SHIPPED, run.result, 0, "sefa", [(1, 1.0)])
    sessions.end_session("gan-inside-a")


def test_stop_ends_a_search_and_keeps_nothing():
    from playground.gan.codes import found_choices
    from playground.gan.tab_inside import on_find
    from playground.ui import stop_live_run

    before = found_choices()
    stream = on_find(SHIPPED, 2, None, 3000, "z", 0.1, 0, "cpu")
    run_id, _, _, status, *_ = next(stream)
    assert run_id and status.startswith(("Finding the face", "Queued"))
    assert stop_live_run(run_id) == "Stopped: nothing was saved."
    *_, (last_id, _, _, status, *_) = stream
    assert last_id is None and status == "Stopped: nothing was kept."
    assert found_choices() == before


def test_render_without_offset_is_the_generator_itself():
    g = tiny_generator()
    z = torch.stack([latent(s, 8) for s in range(3)])
    assert torch.equal(render(g, z), g(z))
    zero = torch.zeros(1, g.main[0].out_channels, 4, 4)
    assert torch.allclose(render(g, z, zero), g(z))


def _register_search(tmp_path, name: str, model: str, target, steps: int, owner: str) -> str:
    """A search run in this process, registered as the worker's result would be."""
    from playground.gan.codes import FOUND_FAMILY

    entry = registry.resolve(FAMILY, model)
    loop, task = build_run(str(tmp_path / name), entry.source, model, target, steps, "z", 0.1,
                           0, "cpu", {"params": {"target": name}})
    train_loop(loop, task)
    registry.register(registry.ModelEntry(name, FOUND_FAMILY, path=tmp_path / name,
                                          owner=owner))
    return name


def test_views_work_with_a_model_trained_in_the_app(tmp_path):
    """A session's own 32 px model (as live training registers it): edits, lookalikes at
    32 px, a search and interpolation from its result."""
    from playground.core import sessions
    from playground.gan.find import training_photo

    tiny_generator(5, nz=100).save_pretrained(tmp_path / "mine")
    with sessions.use_session("gan-inside-own"):
        registry.register(registry.ModelEntry("mine-32", FAMILY, path=tmp_path / "mine",
                                              owner="gan-inside-own", extra={"faces": True}))
        out = edit_along_directions("mine-32", "seed", 2, "pca", [(1, 3.0)], 3)
        assert out.faces[0].size == (64, 64) and len(out.walks[0].who) == 3
        found = _register_search(tmp_path, "found-own", "mine-32", training_photo(3, 32, 1),
                                 5, "gan-inside-own")
        strip = interpolate_codes("mine-32", found, 0, "seed", 1, frames=3)
        assert Image.open(strip.strip_png).size == (3 * 34 - 2, 32)
        with pytest.raises(UserInputError, match="was found with the model 'mine-32'"):
            edit_along_directions(SHIPPED, found, 0, "sefa", [(1, 1.0)])
    sessions.end_session("gan-inside-own")


@pytest.mark.skipif(pretrained_package_dir() is None, reason="gan-face-generate not installed")
def test_views_work_with_the_colour_model(tmp_path):
    """The colour DigiFace DCGAN: edits without Olivetti lookalikes (said so), colour uploads
    read as RGB, a search on three channels."""
    from playground.gan.find import read_upload

    register_models()
    out = edit_along_directions(PRETRAINED_NAME, "seed", 1, "sefa", [(1, 3.0)], 3)
    assert out.faces[0].mode == "RGB" and out.who is None and out.walks[0].who is None
    assert out.table()[0][-1] is None
    Image.new("RGB", (80, 60), (200, 120, 90)).save(tmp_path / "face.jpg")
    target = read_upload(str(tmp_path / "face.jpg"), 64, 3)
    assert target.shape == (3, 64, 64) and abs(target[0].mean() - 200 / 255) < 0.01
    meta = _search(tmp_path / "run", target, steps=3, model=PRETRAINED_NAME)
    assert meta["rms_final"] <= meta["rms_start"]
