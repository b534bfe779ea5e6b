"""The GAN inside views with a hub id (the fake hub's ``test/gan-olivetti``): the edit's record
carries the commit, and a search in a worker process loads the same hub model."""

from __future__ import annotations

import pytest

from playground.core import registry, repro, sessions
from playground.gan import register_models
from playground.gan.find import found_face, start_find
from playground.gan.inside import edit_along_directions
from playground.gan.tab_inside import on_edit

pytest_plugins = ["tests.hub_fixtures"]  # the fake_hub and hub_cache fixtures
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

HUB_ID = "test/gan-olivetti"
register_models()


def test_hub_model_edits_and_finds_a_face(fake_hub, hub_cache):
    registry.clear_cache()
    try:
        pair, walks, info, table, png = on_edit(HUB_ID, "seed", 2, "sefa", 3, 1, 3.0, 2, 0,
                                                3, 0, 4, 0)
        assert repro.read_png_record(png)["revision"] == fake_hub.repos[HUB_ID].sha
        assert "nearest photo is person" in info and len(table) == 1
        with sessions.use_session("gan-inside-hub"):
            run = start_find(HUB_ID, photo=11, steps=5)
            assert run.done.wait(120) and run.error is None, run.error
            out = found_face(run.result)
            assert out.record["model"] == HUB_ID and out.rms_final <= out.rms_start
            edited = edit_along_directions(HUB_ID, run.result, 0, "pca", [(1, 2.0)], 3)
            assert edited.start == f"found {run.result!r}"
            assert edited.record["revision"] == fake_hub.repos[HUB_ID].sha
        sessions.end_session("gan-inside-hub")
    finally:
        registry.clear_cache()
