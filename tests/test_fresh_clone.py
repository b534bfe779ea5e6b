"""A fresh clone with no ../shared beside it (as on a Space) serves the faces from the repo:
the held-out faces picker, the nearest-training-photo gallery and live training all work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, open_tab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clone_url(tmp_path_factory):
    """``git clone`` of this repository into an empty folder, served by its own app.py."""
    base = tmp_path_factory.mktemp("space")
    clone = base / "playground"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
    assert not (base / "shared").exists() and (clone / "assets" / "olivetti_faces.npz").exists()
    env = {k: v for k, v in os.environ.items() if k != "PLAYGROUND_FACES"}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PLAYGROUND_OUTPUT_DIR=str(base / "out"),
               GRADIO_TEMP_DIR=str(base / "gradio"))
    port = free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=clone, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "server.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}", clone
    proc.terminate()
    proc.wait(30)


def test_the_clone_trains_live_from_its_own_faces(clone_url):
    from gradio_client import Client

    url, clone = clone_url
    client = Client(url, verbose=False)
    *_, status, dropdown = client.predict(10, "cpu", 8, api_name="/vae_train")
    assert status.startswith("Done"), status
    # the run is saved in the clone, in this session's own folder (deleted when it ends)
    saved = list((clone / "runs" / "sessions").rglob("model.safetensors"))
    assert len(saved) == 1, saved


def test_the_clone_shows_heldout_faces_and_nearest_photos(clone_url, browser):
    url, _ = clone_url
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("button[role='tab']")
    open_tab(page, "VAE faces")
    page.wait_for_function("document.querySelectorAll('#vae-heldout img').length >= 10")
    open_tab(page, "GAN faces")
    page.locator("#gan-generate").click()
    page.wait_for_function("document.querySelectorAll('#gan-nearest img').length >= 8")
    context.close()
