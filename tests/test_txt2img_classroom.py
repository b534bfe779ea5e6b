"""txt2img in a class: per-session output files, ZeroGPU wrappers, Stop, checked uploads."""

from __future__ import annotations

import pytest
import torch

from playground.core import registry, sessions
from playground.txt2img import inference as inf
from playground.txt2img import model as M
from playground.txt2img.train import PRESETS

TINY = PRESETS["tiny"].model  # UNet (8, 16) at 16 px (8x8 latents)
PROMPT = "a small red star at the top left on a blue background"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny pipeline registered as 'tiny-class' (everyone's model)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-class") / "pipe"
    M.save_pipeline(M.build_untrained_pipeline(TINY), folder)
    registry.register(registry.ModelEntry("tiny-class", inf.FAMILY, path=folder))
    return "tiny-class"


# ---- output files ------------------------------------------------------------------------

def test_outputs_are_unique_per_request_and_live_in_the_session_folder(tiny):
    """Two users on the same seed get the same pixels in different files, each in their own
    session's folder; the step frames too."""
    results = {}
    for user in ("alice", "bob", "bob"):
        with sessions.use_session(user):
            result = inf.generate(tiny, PROMPT, steps=2, seed=3, n_images=2)
            frames = inf.save_frames(result.trajectory)
        results.setdefault(user, []).append((result, frames))
    paths = [p for runs in results.values() for r, f in runs for p in [*r.paths, *f]]
    assert len(set(paths)) == len(paths) == 3 * (2 + 2)
    for user, runs in results.items():
        folder = sessions.output_dir(inf.FAMILY, user)
        for result, frames in runs:
            assert all(p.parent == folder for p in result.paths)
            assert all(str(p).startswith(str(folder)) for p in frames)
    a, b = results["alice"][0][0], results["bob"][0][0]
    assert a.paths[0].read_bytes() == b.paths[0].read_bytes()  # same seed, same PNG bytes
    sessions.end_session("alice")
    assert not any(p.exists() for p in a.paths)
    assert all(p.exists() for p in b.paths)  # bob's stay


def test_no_global_output_folder_is_left():
    assert not hasattr(inf, "OUT_DIR")


# ---- ZeroGPU -------------------------------------------------------------------------------

def test_model_handlers_ask_zerogpu_for_a_slot_that_grows_with_the_work():
    from playground.core import zerogpu
    from playground.txt2img import tab

    generate = zerogpu.HANDLERS["playground.txt2img.tab.generate_on_device"].duration
    compare = zerogpu.HANDLERS["playground.txt2img.tab.compare_on_device"].duration

    def gen(steps, n, size, show=True, auto=0.0):
        return generate("s", "m", "p", "", steps, 4.0, "DDIM", n, size, size, 0, show, auto, 600)

    def cmp(steps, size):
        return compare("s", "m", "p", "", steps, 1.0, 7.5, "DDIM", size, size, 0, 0.0, 600)

    small, shipped = gen(2, 1, 64, show=False), gen(20, 1, 64, auto=2.0)
    sd, big = gen(25, 4, 512), gen(100, 4, 1024)
    assert 5 <= small <= shipped <= 15  # our 64 px model: the fixed part
    assert shipped < sd < big and 20 <= sd <= 40 and big == zerogpu.MAX_DURATION_S
    assert gen(25, 1, 512, show=False) < gen(25, 2, 512, show=False) < gen(50, 2, 512, show=False)
    assert cmp(25, 512) > gen(25, 1, 512, show=False)  # two runs
    assert 5 <= cmp(4, 64) <= 15 and cmp(25, 512) < cmp(100, 1024) <= zerogpu.MAX_DURATION_S
    # unreadable numbers: SD's defaults (25 steps, 1 image, 512 px), not an error
    assert gen("bad", None, None) == gen(25, 1, 512)
    # the gradio handlers run the device parts (a test of the wiring, not of the names)
    assert "generate_on_device" in tab.run_generate.__wrapped__.__code__.co_names
    assert "compare_on_device" in tab.run_compare.__wrapped__.__code__.co_names


def test_device_errors_reach_the_user_as_gr_error(tiny):
    """On ZeroGPU only a gr.Error's message crosses the worker process: the device part itself
    must turn our errors into one (off ZeroGPU the same function runs inline)."""
    import gradio as gr

    from playground.txt2img import tab

    with pytest.raises(gr.Error, match="Prompt is empty"):
        tab.generate_on_device(None, tiny, "", "", 2, 4.0, "DDIM", 1, 16, 16, 0)
    with pytest.raises(gr.Error, match="Unknown model"):
        tab.compare_on_device(None, "no-such-model", PROMPT, "", 2, 1.0, 7.5, "DDIM", 16, 16, 0)


def test_device_part_runs_as_the_session_it_is_given(tiny):
    from playground.txt2img import tab

    out = tab.generate_on_device("carol", tiny, PROMPT, "", 2, 4.0, "DDIM", 1, 16, 16, 0)
    folder = sessions.output_dir(inf.FAMILY, "carol")
    assert [p.startswith(str(folder)) for p in [*out.paths, *out.frames]] == [True] * 3


def test_preload_loads_the_shipped_pipeline_through_the_cache(monkeypatch):
    from playground import txt2img

    seen = []
    monkeypatch.setattr(inf, "load_pipeline", seen.append)
    txt2img.preload()
    assert seen == [txt2img.SHIPPED]
