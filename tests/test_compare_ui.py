"""Compare tab: handlers called directly (shipped table, live refit, scores, views), the API by
name with gradio_client, and one comparison run in headless Chromium. The tab is served alone
in a small Blocks (the lead adds it to the app)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from playground.compare import FAMILIES
from playground.core.repro import read_png_record
from tests.conftest import free_port


def test_shipped_comparison_opens_instantly():
    from playground.compare import tab

    out = tab.show_shipped("8gaussians")
    panels, table, status, record = out[:5], out[5], out[6], out[7]
    assert all(Image.open(p).size[0] > 200 for p in panels)
    assert list(table["family"])[:5] == ["GAN", "VAE", "Flow", "Diffusion (DDPM)",
                                         "Autoregressive"]
    assert "collapsed" in table["family"].iloc[5] and "8gaussians" in status
    assert record["params"]["target"] == "8gaussians"


def test_shipped_8gaussians_meets_the_issue():
    """Flow, diffusion and AR cover 8/8; exact NLLs within 0.1 nats of the entropy; bounds above
    it; the collapsed GAN is far from the good fits."""
    from playground.compare.inference import shipped_comparison

    comp = shipped_comparison("8gaussians")
    rows = {r.family: r for r in comp.rows}
    for family in ("flow", "diffusion", "ar"):
        assert rows[family].modes_covered == 8, family
    for family in ("flow", "ar"):
        assert abs(rows[family].nll - comp.entropy) < 0.1, rows[family]
    for family in ("vae", "diffusion"):
        assert rows[family].nll >= comp.entropy - 3 * rows[family].nll_se
    assert rows["gan"].nll is None
    collapsed = rows["gan-collapsed"]
    assert collapsed.modes_covered < 8
    assert collapsed.distance - rows["flow"].distance > 10 * collapsed.distance_se


def test_views_draw_each_family():
    from playground.compare import views

    for family, fn in views.VIEWS.items():
        view = fn("8gaussians", 0)
        assert view.images and view.caption, family
        assert read_png_record(view.images[0])["params"]["view"].startswith(family)
    diff = views.diffusion_view("8gaussians", 0, frames=5)
    assert len(diff.frames) == 5
    ar = views.ar_view("8gaussians", 1.5, 0)
    assert len(ar.images) == 3 and read_png_record(ar.images[1])["params"]["x0"] == 1.5


def test_live_refit_on_a_csv_streams_and_scores(tmp_path):
    """The user's own points: all five refit in one worker, scored on the 20 % held out."""
    from playground.compare import tab

    pts = torch.randn(300, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n" + "\n".join(f"{x:.4f},{y:.4f}" for x, y in pts.tolist()))
    frames = list(tab.fit_live("my CSV", "moons", None, str(csv), list(FAMILIES), 30, 1, False))
    last = frames[-1]
    panels, table, status, record = last[:5], last[5], last[6], last[7]
    assert status.startswith("Done: 30 steps") and all(p is not None for p in panels)
    assert "held-out points" in status and "entropy" not in status  # no known entropy
    assert len(table) == 5 and "none" in table["NLL or bound (nats)"].iloc[0]
    assert set(table["modes covered"]) == {"—"}
    assert record["params"]["target"] == "custom" and record["params"]["n_eval"] == 60
    assert record["params"]["steps"] == 30 and record["seed"] == 1
    with pytest.raises(Exception, match="Steps"):
        list(tab.fit_live("built-in target", "moons", None, None, list(FAMILIES), 1, 1, False))
    with pytest.raises(Exception, match="at least one family"):
        list(tab.fit_live("built-in target", "moons", None, None, [], 30, 1, False))


@pytest.fixture(scope="module")
def compare_url():
    import gradio as gr

    from playground import ui
    from playground.compare import register_models, tab

    register_models()
    with gr.Blocks() as demo:
        with gr.Tab("Compare"):
            tab.build_tab()
        demo.unload(ui.end_session)
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(),
                        prevent_thread_lock=True, quiet=True)
    yield demo.local_url.rstrip("/")
    demo.close()


def test_api_score_and_fit(compare_url):
    from gradio_client import Client

    client = Client(compare_url, verbose=False)
    table, raw = client.predict("8gaussians", 300, 0, api_name="/compare_score")
    assert len(raw["rows"]) == 6 and raw["record"]["params"]["n_eval"] == 300
    out = client.predict("built-in target", "rings", None, None, ["flow", "ar"], 20, 0, False,
                         api_name="/compare_fit")
    assert out[6].startswith("Done: 20 steps")
    assert out[0] is None and out[2] is not None  # only the chosen families were fitted


def test_browser_runs_a_comparison(browser, compare_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(compare_url)
    page.locator("#compare-steps input").fill("40")
    page.locator("#compare-target input").click()
    page.locator("#compare-target input").fill("Two moons")
    page.keyboard.press("Enter")
    page.locator("#compare-status").get_by_text("moons").wait_for()  # its shipped fits show
    page.locator("#compare-start").click()
    page.locator("#compare-status").get_by_text("Done: 40 steps").wait_for()
    for family in FAMILIES:
        img = page.locator(f"#compare-panel-{family} img")
        assert img.count() == 1 and img.first.get_attribute("src"), family
    text = page.locator("#compare-table").inner_text()
    for label in ("GAN", "VAE", "Flow", "Diffusion (DDPM)", "Autoregressive"):
        assert label in text
    assert "exact" in text and "none" in text and "bound (variational)" in text
    assert "collapsed" not in text  # the live table: the five families only
    context.close()
