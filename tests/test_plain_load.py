"""Every folder in weights/ loads the way a hub model is loaded: the plain library call with no
dtype argument gives fp32 weights that run on CPU (issue 21: "Loads like a hub model")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MAX_FILE_MB, MAX_TOTAL_MB = 10, 100


def _fp32(module: torch.nn.Module) -> None:
    dtypes = {p.dtype for p in module.parameters()}
    assert dtypes == {torch.float32}, dtypes


def test_size_budget():
    files = [p for p in WEIGHTS.rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    assert biggest.stat().st_size <= MAX_FILE_MB * 2**20, biggest
    assert sum(p.stat().st_size for p in files) <= MAX_TOTAL_MB * 2**20


def test_every_folder_is_covered():
    covered = {"txt2img-shapes", "gpt-austen", "gan-olivetti", "gan-face-id", "vae-olivetti"}
    folders = {p.name for p in WEIGHTS.iterdir() if p.is_dir()}
    assert folders - covered == {f for f in folders if f.startswith(("flow-", "compare-"))}


def test_txt2img_pipeline_loads_with_no_dtype_and_samples_in_fp32():
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(WEIGHTS / "txt2img-shapes")
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        _fp32(part)
    out = pipe("a small red circle at the top left on a white background",
               num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np")
    assert out.images.shape == (1, 64, 64, 3) and out.images.dtype.name == "float32"


def test_gpt_loads_with_no_dtype_and_runs_in_fp32():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(WEIGHTS / "gpt-austen")
    tokenizer = AutoTokenizer.from_pretrained(WEIGHTS / "gpt-austen")
    _fp32(model)
    ids = tokenizer("It is a truth universally acknowledged", return_tensors="pt").input_ids
    logits = model(ids).logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("folder, cls", [
    ("gan-olivetti", "playground.gan.model:Generator"),
    ("gan-olivetti/discriminator", "playground.gan.model:Discriminator"),
    ("gan-face-id", "playground.gan.faceid:FaceIdNet"),
    ("vae-olivetti", "playground.vae.model:ConvVAE"),
    *[(p.name, "playground.flow.model:FlowModel") for p in sorted(WEIGHTS.glob("flow-*"))],
])
def test_our_own_models_load_with_no_dtype(folder, cls):
    import importlib

    module, _, name = cls.partition(":")
    model = getattr(importlib.import_module(module), name).from_pretrained(WEIGHTS / folder)
    _fp32(model)


@pytest.mark.parametrize("folder", sorted(p.name for p in WEIGHTS.glob("compare-*")))
def test_compare_fits_load_with_no_dtype(folder):
    """Each family's fit in a compare-<target> folder is its own from_pretrained folder."""
    from playground.compare.inference import load_fit_folder

    fits = load_fit_folder(WEIGHTS / folder)
    assert set(fits) == {"gan", "vae", "flow", "diffusion", "ar"}
    for model in fits.values():
        _fp32(model)
