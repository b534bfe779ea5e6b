"""The shipped weights/txt2img-shapes: loads like a hub model; adherence matches the model card."""

from __future__ import annotations

import json

import pytest
import torch

from playground.core.registry import WEIGHTS_DIR

FOLDER = WEIGHTS_DIR / "txt2img-shapes"
pytestmark = pytest.mark.skipif(not (FOLDER / "model_index.json").exists(),
                                reason="weights/txt2img-shapes is not installed")
TOLERANCE = 0.2  # a 24-image sample vs the card's larger one


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(FOLDER, torch_dtype=torch.float32)


def test_files_within_budget_and_loadable(pipe):
    from diffusers import StableDiffusionPipeline

    sizes = [p.stat().st_size for p in FOLDER.rglob("*") if p.is_file()]
    assert max(sizes) <= 10 * 2**20 and sum(sizes) <= 12 * 2**20
    assert isinstance(pipe, StableDiffusionPipeline)
    assert type(pipe.tokenizer).__name__ == "CLIPTokenizer"


def test_adherence_recomputed_on_a_small_sample(pipe):
    from playground.txt2img.adherence import score
    from playground.txt2img.autoguidance import load_guide
    from playground.txt2img.evaluate import (
        EVAL_AUTOGUIDANCE,
        EVAL_AUTOGUIDANCE_MAX_T,
        EVAL_GUIDANCE,
        EVAL_STEPS,
        generate_for,
    )
    from playground.txt2img.shapes import eval_scenes

    card = json.loads((FOLDER / "adherence.json").read_text())
    assert card["autoguidance"] == EVAL_AUTOGUIDANCE and card["guidance"] == EVAL_GUIDANCE
    assert card["autoguidance_max_t"] == EVAL_AUTOGUIDANCE_MAX_T
    scenes = eval_scenes(24, seed=1000)  # the first prompts of the card's held-out set
    images = generate_for(pipe, scenes, steps=EVAL_STEPS, guidance=EVAL_GUIDANCE,
                          guide=load_guide(FOLDER), autoguidance=EVAL_AUTOGUIDANCE,
                          autoguidance_max_t=EVAL_AUTOGUIDANCE_MAX_T)
    measured = score(scenes, images)
    for key in ("colour", "background", "colour+shape", "all"):
        assert abs(measured[key] - card["held_out"][key]) <= TOLERANCE, (key, measured, card)
