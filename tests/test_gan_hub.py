"""A GAN hub id (the fake hub's ``test/gan-olivetti``): loaded through the tab and the API,
records carrying the commit sha, download progress in the browser's tracker, a stopped hub
reported fast while the app keeps serving."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from playground.core import registry, repro
from playground.core.errors import UserInputError
from playground.gan import SHIPPED, register_models
from playground.gan import tab as gan_tab
from playground.gan.inference import sample_faces

pytest_plugins = ["tests.hub_fixtures"]  # the fake_hub and hub_cache fixtures
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

HUB_ID = "test/gan-olivetti"
register_models()


@pytest.fixture
def cold(hub_cache):
    """A cold hub cache and no loaded models: the next hub load downloads."""
    registry.clear_cache()
    yield hub_cache
    registry.clear_cache()


def test_tab_loads_the_hub_id_with_its_commit_in_every_record(fake_hub, cold):
    faces, near, info, seeds, grid, _ = gan_tab.on_sample(HUB_ID, 0, False, 3, 1.0, "")
    assert "test--gan-olivetti" in str(list(cold.iterdir()))
    assert any("model.safetensors" in d for d in fake_hub.downloads())
    sha = fake_hub.repos[HUB_ID].sha
    record = repro.read_png_record(grid)
    assert record["revision"] == sha and record["model"] == HUB_ID
    assert record["model_hash"] == f"hub:{HUB_ID}"
    assert all(repro.read_png_record(png)["revision"] == sha for png, _ in faces)
    assert seeds == [0, 1, 2] and len(near) == 3  # grey 64 px: nearest photos too
    # the same weights as the shipped folder: the same faces
    local = sample_faces(SHIPPED, seed=0, n=3)
    assert np.array_equal(np.asarray(Image.open(faces[0][0])), np.asarray(local.images[0]))
    assert "revision" not in local.record  # a local folder has its content hash instead
    strip, _, _ = gan_tab.on_interpolate(HUB_ID, 0, 1, 3, "linear", 1.0)
    assert repro.read_png_record(strip)["revision"] == sha


def test_api_loads_the_hub_id(fake_hub, cold, client):
    gallery, nearest, info, grid, seed_a = client.predict(
        HUB_ID, 5, False, 2, 1.0, "", api_name="/gan_sample")
    assert len(gallery) == 2 and "Seeds used: 5, 6" in info and seed_a == 5
    assert repro.read_png_record(grid)["revision"] == fake_hub.repos[HUB_ID].sha
    assert any("model.safetensors" in d for d in fake_hub.downloads())


def test_the_download_shows_progress(fake_hub, cold, client, monkeypatch):
    """The API job reports the hub download's tqdm bar (what gr.Progress shows in a browser)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    fake_hub.delay_per_chunk = 0.1  # ~4 MB of weights: about 2 s of download
    job = client.submit(HUB_ID, 0, False, 1, 1.0, "", api_name="/gan_sample")
    seen = []
    while not job.done():
        status = job.status()
        seen += [(p.desc, p.unit, p.index, p.length) for p in status.progress_data or []]
        time.sleep(0.05)
    assert len(job.result()[0]) == 1
    assert seen, "no progress was reported during the download"
    assert any(length and length > 1e6 for *_, length in seen), seen  # a bar of bytes


def test_a_stopped_hub_is_reported_within_10_s_and_the_app_keeps_serving(fake_hub, cold,
                                                                         client):
    fake_hub.stop()
    start = time.monotonic()
    with pytest.raises(Exception, match="cannot reach the hub") as tab_error:
        gan_tab.on_sample(HUB_ID, 0, False, 2, 1.0, "")
    assert type(tab_error.value).__name__ == "Error"  # gr.Error: shown as such in the browser
    assert time.monotonic() - start < 10
    start = time.monotonic()
    with pytest.raises(Exception, match="cannot reach the hub"):
        client.predict(HUB_ID, 0, False, 2, 1.0, "", api_name="/gan_sample")
    assert time.monotonic() - start < 10
    gallery, *_ = client.predict(SHIPPED, 0, False, 2, 1.0, "", api_name="/gan_sample")
    assert len(gallery) == 2


def test_a_relative_folder_is_not_taken_for_a_hub_id():
    with pytest.raises(UserInputError, match="names a folder on this server"):
        sample_faces("weights/gan-olivetti")
