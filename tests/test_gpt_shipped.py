"""The shipped weights/gpt-austen: size limits, loads, and its held-out nats/char still holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from playground.core.registry import WEIGHTS_DIR

FOLDER = WEIGHTS_DIR / "gpt-austen"
# The opening of Northanger Abbey: the novel the training never saw.
NORTHANGER = ("No one who had ever seen Catherine Morland in her infancy would have\n"
              "supposed her born to be an heroine. Her situation in life, the character\n"
              "of her father and mother, her own person and disposition, were\n"
              "all equally against her. Her father was a clergyman, without being\n"
              "neglected, or poor, and a very respectable man, though his name\n")
AUSTEN_CANDIDATES = [os.environ.get("PLAYGROUND_AUSTEN", ""),
                     str(WEIGHTS_DIR.parents[1] / "shared" / "data" / "text" / "austen.txt")]

pytestmark = pytest.mark.skipif(not FOLDER.exists(), reason="weights/gpt-austen not installed")


@pytest.fixture(scope="module")
def shipped():
    from playground.gpt.evaluate import load_local

    return load_local(str(FOLDER))


def test_folder_respects_the_size_budget_and_is_fp32():
    """fp32 main weights (they load with no dtype argument, like a hub model), sharded so that
    every file stays under 10 MB."""
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    assert all(p.stat().st_size <= 10 * 2**20 for p in files)
    assert sum(p.stat().st_size for p in files) <= 35 * 2**20
    from safetensors import safe_open

    shard = next(FOLDER.glob("*.safetensors"))
    with safe_open(str(shard), "pt") as handle:
        name = next(iter(handle.keys()))
        assert handle.get_tensor(name).dtype == torch.float32
    assert (FOLDER / "README.md").exists() and (FOLDER / "tokenizer.json").exists()


def test_unseen_austen_prose_scores_well(shipped):
    from playground.gpt.evaluate import nats_per_char

    model, tok = shipped
    result = nats_per_char(model, tok, NORTHANGER)
    assert result.nats_per_char < 1.6, result  # a uniform guess over bytes would be 5.5


def test_model_card_number_recomputes_on_a_held_out_slice(shipped):
    from playground.gpt.data import make_split, read_text, reflow
    from playground.gpt.evaluate import SLICE_CHARS, nats_per_char, wants_reflow

    data = next((p for p in AUSTEN_CANDIDATES if p and Path(p).exists()), None)
    if data is None:
        pytest.skip("austen.txt not found (set PLAYGROUND_AUSTEN)")
    stored = json.loads((FOLDER / "eval.json").read_text())
    expected = stored[f"first_{SLICE_CHARS}_chars"]["nats_per_char"]
    model, tok = shipped
    held_out = make_split(read_text(data)).val
    held_out = reflow(held_out) if wants_reflow(model) else held_out  # as evaluate.py scores it
    got = nats_per_char(model, tok, held_out[:SLICE_CHARS])
    assert got.nats_per_char == pytest.approx(expected, abs=0.005)
    # 1.1117 (the previous model: 1.2106); issue 27 asks for at most 1.10, not met yet
    assert stored["full"]["nats_per_char"] <= 1.115
