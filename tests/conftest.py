"""Shared fixtures: the app served once per session, a gradio_client, headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PLAYGROUND_DEVICE", "cpu")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True, scope="session")
def _runs_and_outputs_in_tmp(tmp_path_factory):
    """Session-trained models and output files go to a temporary folder, never to runs/."""
    from playground.core import sessions

    root = tmp_path_factory.mktemp("playground")
    old = sessions.RUNS_ROOT, sessions.OUTPUT_ROOT
    sessions.RUNS_ROOT, sessions.OUTPUT_ROOT = root / "runs", root / "outputs"
    yield root
    sessions.RUNS_ROOT, sessions.OUTPUT_ROOT = old


@pytest.fixture(autouse=True, scope="session")
def _shipped_models_first():
    """Every family's models registered before any test adds a tiny one, as the app does at
    start: a tab's model dropdown opens at the first local model, so a test model registered
    earlier (modules run in any order) would become the default of every later app."""
    from playground import families

    for name in families.available():
        families.load(name)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (and leave the other cores alone)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def app_url():
    """The whole app, launched once on a free port (prevent_thread_lock), closed at the end."""
    import app

    demo = app.build_app()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                quiet=True)
    yield demo.local_url.rstrip("/")
    demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _chromium_missing_reason() -> str | None:
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright; skips (fails under CI=true) if missing."""
    reason = _chromium_missing_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests need Chromium under CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh 1280x900 page on the app, loaded and ready."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(app_url)
    pg.wait_for_selector("button[role='tab']")
    yield pg
    context.close()


def open_tab(page, title: str) -> None:
    """Click the tab whose button text is ``title``."""
    page.get_by_role("tab", name=title).click()


def fill_field(page, selector: str, text: str, tries: int = 3) -> None:
    """Type ``text`` into the input at ``selector`` and leave it (Tab) so the app holds the
    value; fills again while the box still shows another value half a second later (an input
    just mounted by an opening accordion can be reset by its first render)."""
    box = page.locator(selector)
    for _ in range(tries):
        box.fill(text)
        box.press("Tab")
        page.wait_for_timeout(500)
        if box.input_value() == text:
            return
    raise AssertionError(f"{selector} would not keep {text!r}: it shows {box.input_value()!r}")


def assert_image_in_view(page, gallery: str, taller_than: float) -> None:
    """The first image of ``gallery`` (a CSS selector) is drawn taller than ``taller_than`` px
    and lies wholly inside the gallery (a lone image used to grow past the gallery's bottom)."""
    image = page.locator(f"{gallery} img").first.bounding_box()
    box = page.locator(gallery).bounding_box()
    assert image["height"] > taller_than, (image, box)
    assert image["y"] + image["height"] <= box["y"] + box["height"], (image, box)


def write_tiny_faces(folder, monkeypatch, people: int, per_person: int = 4):
    """Random 64×64 'faces' of ``people`` people in an image folder (one sub-folder each), made
    the app's training faces through $PLAYGROUND_FACES; returns the folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for person in range(people):
        (folder / f"p{person}").mkdir()
        for i in range(per_person):
            pixels = (rng.random((64, 64)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"p{person}" / f"{i}.png")
    monkeypatch.setenv("PLAYGROUND_FACES", str(folder))
    return folder


def register_tiny_txt2img(tmp_path_factory, name: str) -> str:
    """A random tiny StableDiffusionPipeline (UNet (8, 16) at 16 px, 8x8 latents) saved in a temp
    folder and registered as ``name`` for everyone; returns the name."""
    import torch

    from playground.core import registry
    from playground.txt2img import inference, model
    from playground.txt2img.train import PRESETS

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name) / "pipe"
    model.save_pipeline(model.build_untrained_pipeline(PRESETS["tiny"].model), folder)
    registry.register(registry.ModelEntry(name, inference.FAMILY, path=folder))
    return name
