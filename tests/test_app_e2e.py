"""End to end: the app over HTTP, over the API (gradio_client) and in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from playground import families
from tests.conftest import free_port, open_tab

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "tests" / "artifacts" / "app.png"  # docs/screenshot.png is a copy


def test_import_app_loads_no_model():
    code = ("import sys, app; heavy = [m for m in ('transformers', 'diffusers', 'zuko', "
            "'accelerate') if m in sys.modules]; print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_api_lists_registered_models(client):
    models = client.predict(api_name="/list_models")
    assert set(models) >= set(families.available()) - {"txt2img"}
    for entries in models.values():
        for entry in entries:
            assert entry["source"] in ("local", "hub")
            if entry["source"] == "local":
                assert entry["installed"] is True, f"{entry['name']} missing from weights/"


def _wait_http(url: str, timeout: float = 90.0, auth_ok: bool = False) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def _serve(args: list[str], env_extra: dict | None = None):
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_honours_space_env_and_auth():
    port = free_port()
    proc = _serve(["--auth", "alice:s3cret"], {"GRADIO_SERVER_PORT": str(port),
                                               "GRADIO_SERVER_NAME": "127.0.0.1"})
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/") == 200  # the login page
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5)
        assert info.value.code == 401
        data = b"username=alice&password=s3cret"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", data=data, timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_share_offline_says_so_and_keeps_serving():
    port = free_port()
    proc = _serve(["--port", str(port), "--share"])
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/") == 200
        deadline, out = time.monotonic() + 60, ""
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and "still serving locally" not in out:
            out += proc.stdout.read() or ""
            time.sleep(0.5)
        assert "Could not create a public share link" in out, out
        assert _wait_http(f"http://127.0.0.1:{port}/") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.browser
def test_browser_clicks_every_tab_and_saves_screenshot(page):
    titles = [families.load(name).TITLE for name in families.available()] + ["About"]
    for title in titles:
        open_tab(page, title)
        page.wait_for_timeout(300)
        panel = page.locator("[role='tabpanel']:visible")
        assert panel.count() >= 1
    open_tab(page, "About")
    assert page.get_by_text("What this is").first.is_visible()
    page.get_by_text("Models in this app").click()
    page.get_by_role("button", name="List models").click()
    page.wait_for_timeout(1500)
    open_tab(page, titles[0])
    page.wait_for_timeout(500)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert SCREENSHOT.stat().st_size > 10_000
