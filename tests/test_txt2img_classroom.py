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
