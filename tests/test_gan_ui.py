"""GAN tab: bad input, live training, the API and the browser."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from playground.core import live, registry
from playground.core.errors import UserInputError
from playground.data.faces import BUNDLED_FACES, faces_source
from playground.gan import FAMILY, SHIPPED, register_models
from playground.gan.inference import interpolate_faces, sample_faces
from tests.conftest import assert_image_in_view, open_tab, write_tiny_faces

register_models()


@pytest.mark.parametrize("kwargs,message", [
    ({"n": 0}, "between 1 and 64"),
    ({"n": 10**4}, "between 1 and 64"),
    ({"n": 2.5}, "whole number"),
    ({"psi": -0.1}, "psi"),
    ({"psi": 2.5}, "psi"),
    ({"psi": "abc"}, "psi"),
    ({"seed": 1.5}, "whole number"),
    ({"seed": "abc"}, "whole number"),
    ({"seed": 2**64}, "64-bit"),
    ({"seed": -1}, "between 0"),
    ({"seed": 2**63 - 2, "n": 4}, "64-bit"),
    ({"seed_list": "1, 2.5"}, "whole numbers"),
    ({"seed_list": "1 x"}, "whole numbers"),
    ({"seed_list": str(2**64)}, "64 bits"),
    ({"seed_list": " ".join(["1"] * 65)}, "At most 64"),
])
def test_sample_bad_input(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        sample_faces(SHIPPED, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"frames": 1}, "Frames"), ({"frames": 1000}, "Frames"), ({"mode": "cubic"}, "linear"),
    ({"seed_b": "x"}, "whole number"), ({"psi": 3}, "psi"),
])
def test_interpolate_bad_input(kwargs, message):
    args = {"seed_a": 0, "seed_b": 1} | kwargs
    with pytest.raises(UserInputError, match=message):
        interpolate_faces(SHIPPED, **args)


def test_unknown_model_and_paths_are_refused():
    with pytest.raises(UserInputError, match="file paths are not accepted"):
        sample_faces("../../etc/passwd")


def test_shipped_model_samples_64px_grey_faces():
    out = sample_faces(SHIPPED, seed=0, n=3)
    assert [img.size for img in out.images] == [(128, 128)] * 3
    assert out.images[0].mode == "L"
    assert Image.open(out.grid_png).text.get("playground")


@pytest.fixture
def tiny_faces(tmp_path, monkeypatch):
    """16 random 'faces' of 4 people in an image folder, used as the training data."""
    return write_tiny_faces(tmp_path, monkeypatch, people=4)


def test_live_training_registers_a_selectable_model(tiny_faces):
    from playground.gan.live import start_training

    run = start_training("scratch", SHIPPED, 32, "cpu", 4)
    assert run.done.wait(120) and run.error is None, run.error
    assert run.result in registry.choices(FAMILY) and len(run.history) >= 1
    assert run.samples and run.samples[-1][1].shape[-1] == 32
    out = sample_faces(run.result, seed=1, n=2)  # the result is usable at once
    assert out.images[0].size == (64, 64)
    cont = start_training("continue", run.result, 32, "cpu", 2)
    assert cont.done.wait(120) and cont.error is None and cont.result


def test_bundled_faces_serve_the_gallery_and_live_training(monkeypatch):
    """No $PLAYGROUND_FACES and no ../shared: the nearest photos and live training use
    assets/olivetti_faces.npz."""
    from playground.gan.live import start_training

    monkeypatch.delenv("PLAYGROUND_FACES", raising=False)
    assert faces_source() == BUNDLED_FACES
    out = sample_faces(SHIPPED, seed=0, n=2)
    assert out.nearest is not None and len(out.nearest.images) == 2
    assert 0.05 < min(out.nearest.distances) < 0.3
    assert 0.1 < out.nearest.same_person_median < 0.15 and out.nearest.closer_than_p05 == 0
    run = start_training("scratch", SHIPPED, 32, "cpu", 2)
    assert run.done.wait(120) and run.error is None, run.error
    folder = registry.resolve(FAMILY, run.result).path
    assert json.loads((folder / "training_summary.json").read_text())["train_images"] == 400


def test_live_training_bad_input_and_cancel(tiny_faces):
    from playground.gan.live import start_training

    with pytest.raises(UserInputError, match="32 or 64"):
        start_training("scratch", SHIPPED, 48, "cpu", 10)
    with pytest.raises(UserInputError, match="Steps"):
        start_training("scratch", SHIPPED, 32, "cpu", 0)
    with pytest.raises(UserInputError, match="continue it at 64"):
        start_training("continue", SHIPPED, 32, "cpu", 10)
    run = start_training("scratch", SHIPPED, 32, "cpu", 5000)
    assert live.cancel_run(run.run_id)
    assert run.done.wait(60) and run.result is None  # cancelled: nothing registered


def test_train_handler_streams_then_registers_or_stops(tiny_faces):
    from playground.gan.tab import on_stop, on_train

    frames = list(on_train("scratch", SHIPPED, 32, "cpu", 3))
    run_id, _, _, grid, status, dropdown = frames[-1]
    assert run_id is None and status.startswith("Done: 'trained here: 32px scratch 3 steps")
    assert dropdown["value"] in registry.choices(FAMILY) and dropdown["value"] in status
    assert grid.size == (4 * (8 * 34 - 2), 4 * (2 * 34 - 2))  # 2x8 grid of 32 px, 4x enlarged
    stream = on_train("scratch", SHIPPED, 32, "cpu", 5000)
    run_id, *_, status, _ = next(stream)
    assert run_id and status.startswith("Training (scratch, 32 px, cpu): step")
    assert on_stop(run_id) == "Stopped: nothing was saved."
    *_, (last_id, _, _, _, status, _) = stream
    assert last_id is None and status == "Stopped: nothing was saved."


def test_api_sample_and_interpolate(client):
    gallery, nearest, info, grid, seed_a = client.predict(
        SHIPPED, 5, False, 4, 1.0, "", api_name="/gan_sample")
    assert len(gallery) == 4 and len(nearest) in (0, 4) and "Seeds used: 5, 6, 7, 8" in info
    assert seed_a == 5 and grid.endswith(".png")
    strip, gif, strip_file = client.predict(SHIPPED, 1, 2, 4, "linear", 0.7,
                                            api_name="/gan_interpolate")
    assert Image.open(strip).size[0] > Image.open(strip).size[1]  # a horizontal strip
    assert getattr(Image.open(gif), "n_frames", 1) == 6  # there and back
    with pytest.raises(Exception, match="64 bits"):
        client.predict(SHIPPED, 0, False, 4, 1.0, str(2**64), api_name="/gan_sample")
    with pytest.raises(Exception, match="between 1 and 64"):
        client.predict(SHIPPED, 0, False, 0, 1.0, "", api_name="/gan_sample")


def test_browser_samples_and_interpolates(page):
    open_tab(page, "GAN faces")
    page.locator("#gan-generate").click()
    page.wait_for_function("document.querySelectorAll('#gan-samples img').length >= 8")
    assert "Seeds used: 0, 1, 2" in page.inner_text("#gan-info")
    page.locator("#gan-samples img").nth(2).click()  # reuse the third face's seed
    page.wait_for_function(
        "document.querySelector('#gan-seed-a input') && "
        "document.querySelector('#gan-seed-a input').value === '2'")
    page.locator("#gan-interpolate").click()
    page.wait_for_selector("#gan-strip img")
    assert page.locator("#gan-strip img").count() == 1


def _one_face(page, gallery: str) -> None:
    open_tab(page, "GAN faces")
    page.locator("#gan-n input").fill("1")
    page.locator("#gan-generate").click()
    page.wait_for_function(f"document.querySelectorAll('{gallery} img').length == 1")
    assert_image_in_view(page, gallery, taller_than=60)


def test_browser_shows_a_lone_face_whole(page):
    _one_face(page, "#gan-samples")


def test_browser_shows_a_lone_nearest_photo_whole(page):
    _one_face(page, "#gan-nearest")


def _drawn_sizes(page, gallery: str) -> list[tuple[float, float]]:
    boxes = [page.locator(f"{gallery} img").nth(i).bounding_box()
             for i in range(page.locator(f"{gallery} img").count())]
    return [(b["width"], b["height"]) for b in boxes]


def test_browser_shows_each_face_where_it_reads(page):
    """Issue 27: the eight default faces and their nearest photos are each drawn at least
    128 px on a 1280 px wide window, and the first row is in view without scrolling."""
    open_tab(page, "GAN faces")
    page.locator("#gan-generate").click()
    page.wait_for_function("document.querySelectorAll('#gan-samples img').length == 8 && "
                           "document.querySelectorAll('#gan-nearest img').length == 8")
    for gallery in ("#gan-samples", "#gan-nearest"):
        sizes = _drawn_sizes(page, gallery)
        assert len(sizes) == 8 and min(min(s) for s in sizes) >= 128, (gallery, sizes)
        assert_image_in_view(page, gallery, taller_than=128)
