"""A tiny real StableDiffusionPipeline: save/load, schedulers, trajectory, PNG records, inputs."""

from __future__ import annotations

import pytest
import torch

from playground.core import registry
from playground.core.errors import UserInputError
from playground.txt2img import inference as inf
from playground.txt2img import model as M
from playground.txt2img.train import PRESETS

TINY = PRESETS["tiny"].model  # UNet (8, 16) at 16 px (8x8 latents)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A random tiny pipeline saved in HF format and registered as 'tiny-test'."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    M.save_pipeline(M.build_untrained_pipeline(TINY), folder)
    registry.register(registry.ModelEntry("tiny-test", inf.FAMILY, path=folder))
    return folder


def test_save_load_round_trip(tiny_pipeline):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_pipeline)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert (tiny_pipeline / "tokenizer" / "vocab.json").exists()
    again = DiffusionPipeline.from_pretrained(tiny_pipeline)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    out = [p("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(1),
             output_type="np").images for p in (pipe, again)]
    assert out[0].shape == (1, 16, 16, 3) and (out[0] == out[1]).all()


@pytest.mark.parametrize("name", list(inf.SCHEDULERS))
def test_scheduler_swap_and_trajectory_length(tiny_pipeline, name):
    result = inf.generate("tiny-test", "a small red star", steps=3, guidance=4.0, seed=2,
                          scheduler=name)
    assert len(result.trajectory) == 3
    assert result.images[0].size == (16, 16) and result.trajectory[0].size == (16, 16)
    swapped = inf.with_scheduler(inf.load_pipeline("tiny-test").pipe, name)
    assert type(swapped.scheduler).__name__ == inf.SCHEDULERS[name]


def test_same_seed_gives_identical_png_bytes_and_record(tiny_pipeline, tmp_path):
    a = inf.generate("tiny-test", "a large blue square", steps=3, seed=7, n_images=2,
                     scheduler="Euler ancestral", out_dir=tmp_path / "a")
    b = inf.generate("tiny-test", "a large blue square", steps=3, seed=7, n_images=2,
                     scheduler="Euler ancestral", out_dir=tmp_path / "b")
    c = inf.generate("tiny-test", "a large blue square", steps=3, seed=8, n_images=1,
                     scheduler="Euler ancestral", out_dir=tmp_path / "c")
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    assert a.paths[0].read_bytes() != c.paths[0].read_bytes()
    params = inf.read_parameters(a.paths[1])
    assert isinstance(params, inf.PngParameters)
    assert params.prompt == "a large blue square" and params.seed == 7
    assert params.steps == 3 and params.scheduler == "Euler ancestral"
    assert params.stored["image_index"] == 1 and params.model == "tiny-test"
    assert params.stored["model_hash"].startswith("sha256:")


def test_png_info_refuses_foreign_png(tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(UserInputError, match="no text-to-image parameters"):
        inf.read_parameters(plain)
    with pytest.raises(UserInputError):
        inf.read_parameters(None)


@pytest.mark.parametrize("kwargs,message", [
    ({"prompt": ""}, "Prompt is empty"),
    ({"prompt": "   "}, "Prompt is empty"),
    ({"prompt": "x" * 10_000}, "too long"),
    ({"negative_prompt": "y" * 10_000}, "Negative prompt is too long"),
    ({"steps": 0}, "Steps must be between"),
    ({"steps": 10_000}, "Steps must be between"),
    ({"guidance": -1}, "Guidance scale must be between"),
    ({"guidance": 1e9}, "Guidance scale must be between"),
    ({"scheduler": "LMS-x"}, "Unknown scheduler"),
    ({"n_images": 0}, "Number of images"),
    ({"width": 17}, "multiple of"),
    ({"width": 4096}, "Width must be between"),
    ({"height": 2}, "Height must be between"),
])
def test_bad_input_gives_clear_message(tiny_pipeline, kwargs, message):
    args = {"prompt": "a red circle", "steps": 2, **kwargs}
    with pytest.raises(UserInputError, match=message):
        inf.generate("tiny-test", **args)


def test_unicode_prompt_works(tiny_pipeline):
    result = inf.generate("tiny-test", "ein rötlicher Kreis 🔴✨ 圆", steps=2, seed=0)
    assert result.images[0].size == (16, 16)


def test_long_prompt_is_truncated_with_a_note(tiny_pipeline):
    result = inf.generate("tiny-test", " ".join(["red circle"] * 40), steps=1, seed=0)
    assert any("reads only the first" in n for n in result.notes)


def test_unknown_or_path_model_is_refused():
    with pytest.raises(UserInputError, match="file paths are not accepted"):
        inf.generate("/etc/passwd", "a red circle")


def test_tab_handlers_restore_png_info(tiny_pipeline):
    """The tab's generate handler reports the seed; dropping its PNG back restores every field."""
    from playground.txt2img import tab

    gallery, seed, info, record, strip, _scrub, _image, frames = tab.run_generate(
        "tiny-test", "a small red star", "blurry", 2, 3.5, "Euler", 1, 16, 16, 3, False, True)
    assert seed == 3 and "Seed used: **3**" in info and len(frames) == 2 == len(strip)
    restored = tab.restore_from_png(gallery[0])
    assert restored[:11] == ("tiny-test", "a small red star", "blurry", 2, 3.5, "Euler", 1, 16,
                             16, 3, False)
    assert tab.show_frame(frames, 1) == frames[0] and tab.show_frame([], 1) is None
