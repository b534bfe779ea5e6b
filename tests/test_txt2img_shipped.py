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
    assert max(sizes) <= 10 * 2**20 and sum(sizes) <= 20 * 2**20  # fp32 main weights
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


# Pinned outputs (diffusers' ``expected_slice`` habit): numbers of a fixed-seed generation with
# the shipped model, recorded on CPU before the issue-25 refactor. A silent numeric change in the
# sampler, the autoguidance hook, the trajectory decoding or an upgrade fails here.
PIN_PROMPT = "a small red star at the top left on a blue background"
PIN_PIXELS = [[51, 195, 211], [199, 214, 220], [221, 221, 221]]  # red channel, rows/cols 12-14
PIN_IMAGE_MEAN = [49.982421875, 81.806884765625, 216.202392578125]  # per channel, 0-255
PIN_FIRST_FRAME_MEAN = [84.03759765625, 78.625244140625, 139.396484375]  # x0 after step 1
PIN_EVAL_MEANS = [[79.36474609375, 99.033935546875, 188.040771484375],
                  [236.9716796875, 226.71337890625, 198.462890625]]


def test_pinned_generation_of_the_shipped_model(tmp_path):
    """4 DDIM steps, seed 0, the shipped guidance and autoguidance (its suggested settings)."""
    import numpy as np

    from playground import txt2img
    from playground.txt2img.inference import generate

    txt2img.register_models()
    result = generate(txt2img.SHIPPED, PIN_PROMPT, steps=4, seed=0, out_dir=tmp_path)
    params = result.record["params"]
    assert (params["guidance"], params["autoguidance"], params["autoguidance_max_t"]) == (
        4.0, 2.0, 600)
    image = np.asarray(result.images[0]).astype(float)
    assert image.shape == (64, 64, 3) and len(result.trajectory) == 4
    assert np.abs(image[12:15, 12:15, 0] - PIN_PIXELS).max() <= 3
    assert np.allclose(image.mean(axis=(0, 1)), PIN_IMAGE_MEAN, atol=0.5)
    first = np.asarray(result.trajectory[0]).astype(float)
    assert np.allclose(first.mean(axis=(0, 1)), PIN_FIRST_FRAME_MEAN, atol=0.5)


def test_pinned_evaluation_images_of_the_shipped_model(pipe):
    """The evaluation sampler on two held-out prompts, 4 steps, shipped guidance, no guide."""
    import numpy as np

    from playground.txt2img.evaluate import generate_for
    from playground.txt2img.shapes import eval_scenes

    images = generate_for(pipe, eval_scenes(2, seed=1000), steps=4, guidance=4.0)
    means = [np.asarray(i).astype(float).mean(axis=(0, 1)) for i in images]
    assert np.allclose(means, PIN_EVAL_MEANS, atol=0.5), [m.tolist() for m in means]
