"""VAE requests on tiny models: interpolation, reconstruction, sampling, explorer, uploads,
bad input, and the AutoencoderKL path (a tiny random one saved locally)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from playground.core import registry
from playground.core.errors import ModelLoadError, UserInputError
from playground.vae import FAMILY, register_models
from playground.vae import inference as inf
from playground.vae.images import read_upload
from playground.vae.model import ConvVAE

register_models()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-vae")
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=4, base_width=4, max_width=8)
    with torch.no_grad():  # larger weights than at init, so different codes decode differently
        for p in model.parameters():
            p.mul_(4)
    model.save_pretrained(folder)
    registry.register(registry.ModelEntry("tiny-vae-test", FAMILY, path=folder))
    return "tiny-vae-test"


@pytest.fixture
def faces_folder(tmp_path, monkeypatch) -> Path:
    """6 people × 3 random 'faces' as the data set; 5 people are held out."""
    rng = np.random.default_rng(0)
    for person in range(6):
        (tmp_path / f"p{person}").mkdir()
        for i in range(3):
            Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(
                tmp_path / f"p{person}" / f"{i}.png")
    monkeypatch.setenv("PLAYGROUND_FACES", str(tmp_path))
    return tmp_path


@pytest.fixture
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("upload") / "photo.jpg"
    Image.fromarray((np.random.default_rng(1).random((90, 120, 3)) * 255).astype(np.uint8)).save(
        path)
    return str(path)


def test_interpolation_from_uploads_and_heldout_faces(tiny_model, faces_folder, photo):
    faces = inf.heldout_faces()
    labels = faces.labels
    assert len(labels) == 15 and faces.images.shape == (15, 64, 64)
    out = inf.interpolate_faces(tiny_model, labels[0], None, None, photo, frames=7,
                                mode="linear", through_mean=True)
    assert isinstance(out, inf.Interpolation)
    assert out.frames.shape == (7, 1, 64, 64) and out.steps.shape == (6,)
    assert out.preview_b.size == (128, 128) and out.preview_b.mode == "L"
    assert out.unevenness >= 1
    gif = Image.open(out.gif)
    assert gif.format == "GIF" and gif.n_frames == 12  # there and back
    strip = Image.open(out.strip_png)
    assert strip.width > 6 * strip.height and json.loads(strip.text["playground"])["params"][
        "face_b"].startswith("upload sha256:")
    assert Image.open(out.mean_strip_png).size == strip.size
    # linear path between two codes: the decoded ends are the reconstructions of A and B
    codec = inf.load_codec(tiny_model)
    face = inf.load_face(codec, labels[0], None, "A")
    assert face.description == labels[0]
    mu, _ = codec.encode(face.x)
    assert torch.allclose(out.frames[0], codec.decode(mu)[0], atol=1e-6)


def test_paths_linear_spherical_and_through_the_mean():
    za, zb = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    lin = inf.interpolate_latents(za, zb, 5, "linear")
    assert torch.allclose(lin[2], torch.tensor([0.5, 1.0]))
    sph = inf.interpolate_latents(za, zb, 3, "spherical")
    # halfway on the great circle: 45 degrees, length halfway between 1 and 2
    assert torch.allclose(sph[1], 1.5 * torch.tensor([2 ** -0.5, 2 ** -0.5]), atol=1e-6)
    assert torch.equal(sph[0], za) and torch.allclose(sph[-1], zb, atol=1e-6)
    via = inf.interpolate_latents(za, zb, 5, "linear", through_mean=True)
    assert torch.equal(via[2], torch.zeros(2)) and torch.equal(via[-1], zb)


def test_reconstruct_sample_explore(tiny_model, faces_folder, photo):
    out = inf.reconstruct_face(tiny_model, upload=photo)
    panel = Image.open(out.image_png)
    assert panel.mode == "RGB" and panel.width > 2.5 * panel.height
    assert 0 < out.mse < 1 and 0 < out.bits_per_dim < 1e4  # (weights scaled x4: big KL)
    a = inf.sample_faces(tiny_model, seed=5, n=3, temperature=0.8)
    b = inf.sample_faces(tiny_model, seed=5, n=3, temperature=0.8)
    assert a.seed == 5 and len(a.images) == 3 and Path(a.grid_png).is_file()
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
               zip(a.images, b.images, strict=True))
    c = inf.sample_faces(tiny_model, seed=6, n=3, temperature=0.8)
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    zero = inf.sample_faces(tiny_model, seed=1, n=2, temperature=0)  # the mean code, twice
    assert np.array_equal(np.asarray(zero.images[0]), np.asarray(zero.images[1]))
    explored = inf.explore(tiny_model, 1.0, -2.0)
    assert explored.image.size == (256, 256) and "PCA of 18 encoded faces" in explored.info
    centre = inf.explore(tiny_model)  # no coefficients: the mean code of the encoded faces
    assert not np.array_equal(np.asarray(centre.image), np.asarray(explored.image))


def _save(tmp_path, name, image: Image.Image, **kw) -> str:
    path = tmp_path / name
    image.save(path, **kw)
    return str(path)


def test_uploads_of_every_mode_become_grey_64px(tmp_path):
    rgba = Image.new("RGBA", (80, 60), (0, 0, 0, 0))  # fully transparent → white
    assert read_upload(_save(tmp_path, "a.png", rgba), 64, 1).min() == pytest.approx(1.0)
    cmyk = Image.new("CMYK", (70, 70), (0, 0, 0, 255))  # black ink
    assert read_upload(_save(tmp_path, "c.jpg", cmyk), 64, 1).max() < 0.1
    sixteen = Image.fromarray(np.full((50, 50), 32768, np.uint16))  # mid grey, 16 bits
    grey = read_upload(_save(tmp_path, "g16.png", sixteen), 64, 1)
    assert grey.shape == (64, 64) and grey.mean() == pytest.approx(0.5, abs=0.01)
    colour = read_upload(_save(tmp_path, "c16.png", sixteen), 32, 3)
    assert colour.shape == (32, 32, 3) and colour.mean() == pytest.approx(0.5, abs=0.01)
    palette = Image.new("P", (40, 30))
    assert read_upload(_save(tmp_path, "p.gif", palette), 64, 1).shape == (64, 64)


def test_bad_uploads_are_refused_with_clear_messages(tmp_path, tiny_model, faces_folder):
    tiny = _save(tmp_path, "one.png", Image.new("L", (1, 1)))
    with pytest.raises(UserInputError, match="only 1×1 pixels"):
        inf.reconstruct_face(tiny_model, upload=tiny)
    huge = _save(tmp_path, "huge.png", Image.new("L", (8000, 6500)))  # 52 MP, small file
    with pytest.raises(UserInputError, match="52.0 megapixels; the limit is 16 megapixels"):
        inf.interpolate_faces(tiny_model, upload_a=huge, upload_b=huge)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UserInputError, match="is not an image"):
        inf.reconstruct_face(tiny_model, upload=str(text))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(Path(_save(tmp_path, "ok.png", Image.effect_noise((64, 64), 50))
                               ).read_bytes()[:200])
    with pytest.raises(UserInputError, match="damaged or truncated"):
        inf.reconstruct_face(tiny_model, upload=str(truncated))
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(UserInputError, match="is empty"):
        inf.reconstruct_face(tiny_model, upload=str(empty))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # making the file
def test_a_pixel_bomb_upload_is_refused_fast_before_decoding(tmp_path, tiny_model,
                                                              faces_folder, monkeypatch):
    """A 13000×13000 PNG of a few hundred kB: refused from its header, the limit named."""
    import time

    bomb = _save(tmp_path, "bomb.png", Image.new("L", (13000, 13000), 255))
    assert Path(bomb).stat().st_size < 1_000_000
    from PIL import ImageFile

    labels = inf.heldout_faces().labels
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded it"))
    for request in (lambda: inf.reconstruct_face(tiny_model, upload=bomb),
                    lambda: inf.interpolate_faces(tiny_model, None, labels[0], bomb, None),
                    lambda: inf.interpolate_faces(tiny_model, labels[0], None, None, bomb)):
        t0 = time.perf_counter()
        with pytest.raises(UserInputError, match=r"13000×13000 = 169\.0 megapixels; the limit "
                                                 r"is 16 megapixels"):
            request()
        assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kwargs,message", [
    ({"frames": 0}, "Frames must be between 2 and 64"),
    ({"frames": 10**5}, "Frames must be between 2 and 64"),
    ({"frames": 2.5}, "whole number"),
    ({"mode": "cubic"}, "linear"),
    ({"face_a": "person 999 · photo 0"}, "Face A: choose a held-out face"),
    ({"face_b": None}, "Face B"),
])
def test_interpolate_bad_input(kwargs, message, tiny_model, faces_folder):
    labels = inf.heldout_faces().labels
    args = {"face_a": labels[0], "face_b": labels[1]} | kwargs
    with pytest.raises(UserInputError, match=message):
        inf.interpolate_faces(tiny_model, **args)


@pytest.mark.parametrize("kwargs,message", [
    ({"n": 0}, "between 1 and 64"), ({"temperature": 3}, "Temperature"),
    ({"seed": -1}, "between 0"), ({"seed": "x"}, "whole number"),
])
def test_sample_bad_input(kwargs, message, tiny_model):
    with pytest.raises(UserInputError, match=message):
        inf.sample_faces(tiny_model, **kwargs)


def test_missing_data_and_paths_and_offline_hub(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_FACES", str(tmp_path / "absent.mat"))
    with pytest.raises(UserInputError, match="upload a photo instead"):
        inf.reconstruct_face(tiny_model, face="person 1 · photo 0")
    with pytest.raises(UserInputError, match="file paths are not accepted"):
        inf.sample_faces("../../etc/passwd")
    monkeypatch.setattr(registry, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="offline"):
        inf.sample_faces("stabilityai/sd-vae-ft-mse")


def test_autoencoderkl_through_the_same_functions(tmp_path, faces_folder, photo):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                  norm_num_groups=4, sample_size=32).save_pretrained(tmp_path / "kl")
    registry.register(registry.ModelEntry("tiny-kl-test", FAMILY, path=tmp_path / "kl"))
    codec = inf.load_codec("tiny-kl-test")
    assert (codec.kind, codec.size, codec.channels, codec.latent_shape) == (
        "autoencoderkl", 32, 3, (4, 16, 16))
    labels = inf.heldout_faces().labels
    out = inf.interpolate_faces("tiny-kl-test", labels[0], None, None, photo, frames=4)
    assert out.frames.shape == (4, 3, 32, 32) and out.preview_b.mode == "RGB"
    rec = inf.reconstruct_face("tiny-kl-test", upload=photo)
    assert rec.bits_per_dim is None and rec.mse > 0
    assert inf.sample_faces("tiny-kl-test", seed=0, n=2).images[0].size == (64, 64)  # 2x


def test_heldout_faces_come_from_the_bundled_file_without_shared_data(monkeypatch):
    from playground.data.faces import BUNDLED_FACES

    monkeypatch.delenv("PLAYGROUND_FACES", raising=False)
    assert inf.faces_source() == BUNDLED_FACES
    faces = inf.heldout_faces()
    labels = faces.labels
    assert len(labels) == 50 and faces.images.shape == (50, 64, 64)  # 5 held-out people × 10
    assert labels[0] == "person 10 · photo 0" and labels[-1] == "person 30 · photo 9"
    assert len(inf.all_faces()) == 400


def test_each_request_resolves_its_model_once(tiny_model, faces_folder, photo, monkeypatch):
    calls = []
    original = registry.resolve

    def counting(family, name):
        calls.append(name)
        return original(family, name)

    monkeypatch.setattr(registry, "resolve", counting)
    labels = inf.heldout_faces().labels
    for request in (lambda: inf.sample_faces(tiny_model, seed=0, n=1),
                    lambda: inf.reconstruct_face(tiny_model, upload=photo),
                    lambda: inf.interpolate_faces(tiny_model, labels[0], labels[1], frames=3),
                    lambda: inf.explore(tiny_model, 0.5)):
        calls.clear()
        request()
        assert calls == [tiny_model]


def test_outputs_are_fresh_files_in_the_session_folder(tiny_model, faces_folder, photo):
    """Same seed twice, two sessions: every PNG/GIF has its own name in its session's folder,
    and ending the session deletes them."""
    from playground.core import sessions

    labels = inf.heldout_faces().labels
    with sessions.use_session("vae-alice"):
        first = inf.sample_faces(tiny_model, seed=3, n=2)
        again = inf.sample_faces(tiny_model, seed=3, n=2)
        walk = inf.interpolate_faces(tiny_model, labels[0], labels[1], frames=3,
                                     through_mean=True)
        recon = inf.reconstruct_face(tiny_model, upload=photo)
    with sessions.use_session("vae-bob"):
        other = inf.sample_faces(tiny_model, seed=3, n=2)
    alice = sessions.output_dir(FAMILY, "vae-alice")
    files = [first.grid_png, again.grid_png, walk.strip_png, walk.gif, walk.mean_strip_png,
             recon.image_png]
    assert len(set(files)) == len(files)
    assert all(Path(f).parent == alice and Path(f).is_file() for f in files)
    assert Path(other.grid_png).parent == sessions.output_dir(FAMILY, "vae-bob")
    assert Path(first.grid_png).read_bytes() == Path(other.grid_png).read_bytes()
    sessions.end_session("vae-alice")
    assert not any(Path(f).exists() for f in files) and Path(other.grid_png).is_file()
    sessions.end_session("vae-bob")
