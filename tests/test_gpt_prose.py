"""Prose for the GPT (issue 27): reflowed paragraphs, whole-text token ids, the austen-prose
preset, and the line-break acceptance test of the shipped model."""

from __future__ import annotations

import json
import re

import pytest
import torch

from playground.core.registry import WEIGHTS_DIR
from playground.gpt.data import encode, reflow, stray_line_breaks, train_tokenizer
from tests.test_gpt_support import tiny_text

SHIPPED = WEIGHTS_DIR / "gpt-austen"


def test_reflow_joins_printed_lines_and_keeps_one_blank_line_per_paragraph():
    text = ("CHAPTER 1\n\n\nNo one who had ever seen Catherine\nMorland in her infancy.  \n"
            "Her father was\na clergyman.\n\n\n\n\"Yes,\" said she.\n\n\"No,\" he\nreplied.\n")
    assert reflow(text) == ("CHAPTER 1\n\nNo one who had ever seen Catherine Morland in her "
                            "infancy. Her father was a clergyman.\n\n\"Yes,\" said she.\n\n"
                            "\"No,\" he replied.")


def test_reflow_joins_indented_verse_and_whitespace_only_lines():
    text = ("    My first doth affliction denote,\n      Which my second is destin'd to feel\n"
            "  \t \n\n        To Miss--\n          CHARADE.\n\t\nEnd  of \t it. \n")
    assert reflow(text) == ("My first doth affliction denote, Which my second is destin'd to "
                            "feel\n\nTo Miss-- CHARADE.\n\nEnd of it.")


def test_reflow_does_not_add_a_space_inside_a_dash_broken_at_the_line_end():
    assert reflow("she still lived on--\nlived to have six") == ("she still lived "
                                                                 "on--lived to have six")
    assert reflow("Well-- I know.") == "Well-- I know."  # a space typed in the line stays


@pytest.mark.parametrize("text", ["", "\n\n\n", "one line", "a\nb\n\nc", tiny_text(5)])
def test_reflowed_text_has_no_single_newline_and_is_a_fixed_point(text):
    once = reflow(text)
    assert stray_line_breaks(once, ignore_tail=False) == 0
    assert not re.search(r" \n|\n | $|^\s", once)
    assert reflow(once) == once


def test_stray_line_breaks_counts_runs_other_than_a_paragraph_break():
    assert stray_line_breaks("a\n\nb\n\nc") == 0
    assert stray_line_breaks("a\nb\n\nc\n\n\nd") == 2  # a wrap and an empty paragraph
    assert stray_line_breaks("cut off mid-break\n") == 0
    assert stray_line_breaks("cut off mid-break\n", ignore_tail=False) == 1


NEWLINE_TEXTS = [
    "a\nb", "a\n\nb", "a\n\n\nb", "a\n\n\n\nb", "a\n\n\n\n\nb",
    "  leading spaces\n  and an indented line\n\n\n \"Yes,\" said he.\n\n\"No.\"\n",
    "x \n\ny", "end\n\n", "\n\nstart", "\t\n\nq", "a \n b", "\n", "",
    "\"Do you--\"\n\n\"I do.\"\n\n\n\nCHAPTER 2\n\n\n'Tis 1803.\n\n  \n\n--so.",
]


def _tokenizers():
    texts = "\n\n\n".join(NEWLINE_TEXTS * 20) + tiny_text(60)
    yield "trained-here", train_tokenizer(texts, vocab_size=400)
    if (SHIPPED / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        yield "shipped", AutoTokenizer.from_pretrained(SHIPPED)


@pytest.fixture(scope="module", params=list(_tokenizers()), ids=lambda p: p[0])
def tokenizer(request):
    return request.param[1]


@pytest.mark.parametrize("text", NEWLINE_TEXTS)
def test_encode_gives_the_ids_of_the_whole_text(tokenizer, text):
    assert encode(tokenizer, text).tolist() == tokenizer(text)["input_ids"]


def test_encode_of_a_long_text_matches_the_whole_text_ids(tokenizer):
    text = "\n".join(NEWLINE_TEXTS) + tiny_text(400).replace(". ", ".\n\n\n ") * 3
    whole = tokenizer(text, verbose=False)["input_ids"]
    assert len(text) > 100_000 and encode(tokenizer, text).tolist() == whole


def test_cutting_after_a_blank_line_would_change_the_ids(tokenizer):
    """Why the cut sits before the last "\\n": a piece ending in "\\n\\n" pre-tokenizes it as
    one piece, the whole text as "\\n", "\\n" (this test fails if that ever stops being so,
    and the cut could then move)."""
    text = "She smiled.\n\nHe bowed."
    whole = tokenizer(text)["input_ids"]
    pieces = [p for p in re.split(r"(?<=\n)(?=\S)", text) if p]
    cut = [i for piece in pieces for i in tokenizer(piece)["input_ids"]]
    if tokenizer("\n\n")["input_ids"] != tokenizer("\n")["input_ids"] * 2:  # "\n\n" is a token
        assert cut != whole
    assert encode(tokenizer, text).tolist() == whole


def test_austen_prose_preset_is_reflowed_512_context_and_fits_40_mb_in_fp32():
    from playground.gpt.model import build_model
    from playground.gpt.train import resolve_config

    cfg = resolve_config("austen-prose")
    assert cfg.reflow and cfg.block_size == 512 and cfg.vocab_size == 8192

    class Vocab:
        bos_token_id = eos_token_id = pad_token_id = 0

        def __len__(self) -> int:
            return cfg.vocab_size

    model = build_model(cfg, Vocab())
    assert model.config.reflowed_text and model.config.n_positions == 512
    stored = {p.data_ptr(): p.numel() for p in model.parameters()}  # tied head counted once
    assert sum(stored.values()) * 4 <= 40e6


def test_a_reflow_preset_trains_on_paragraphs_and_records_it(tmp_path):
    from playground.core.training import LoopConfig
    from playground.gpt.evaluate import wants_reflow
    from playground.gpt.train import prepare_run, resolve_config

    text = "\n".join(tiny_text(60).replace(". ", ".\n").split(" and "))  # printed wraps
    cfg = resolve_config("tiny", {"reflow": True})
    loop = LoopConfig(max_steps=1, out_dir=str(tmp_path / "m"), progress=False)
    task, _ = prepare_run(cfg, loop, text)
    model = task.models["gpt"]
    assert model.config.reflowed_text and wants_reflow(model)
    assert not wants_reflow(model, "no")
    assert task.summary["train_chars"] + task.summary["val_chars"] < len(text)
    batch = next(task.batches)
    assert batch.shape == (cfg.batch_size, cfg.block_size + 1)


def test_saved_weights_are_fp32_and_load_without_a_dtype(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from playground.core.training import LoopConfig
    from playground.gpt.train import PRESETS, run_training

    out = tmp_path / "tiny"
    run_training(PRESETS["tiny"], LoopConfig(max_steps=2, out_dir=str(out), progress=False),
                 tiny_text())
    for shard in out.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as handle:
            assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float32}
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.float32


def _shipped_is_reflowed() -> bool:
    config = SHIPPED / "config.json"
    return config.exists() and json.loads(config.read_text()).get("reflowed_text", False)


@pytest.mark.skipif(not _shipped_is_reflowed(),
                    reason="weights/gpt-austen is not a reflowed model yet (its config.json has "
                           "no reflowed_text: true); this acceptance test of issue 27 runs once "
                           "the austen-prose weights ship")
def test_shipped_model_writes_no_line_break_that_is_not_a_paragraph_break():
    """Issue 27: 20 samples of 200 tokens at the app's default settings (temperature 0.8,
    top-p 0.95, no top-k, no repetition penalty), no stray "\\n". The old model (printed
    wraps in its training text) writes ~10 per sample, so this can fail."""
    from playground.gpt import SHIPPED as NAME
    from playground.gpt import register_models
    from playground.gpt.inference import generate
    from playground.gpt.tab import DEFAULT_PROMPT

    register_models()
    torch.set_num_threads(1)
    stray = {}
    for seed in range(20):
        generated = generate(NAME, DEFAULT_PROMPT, max_new_tokens=200, seed=seed).text
        stray[seed] = stray_line_breaks(generated)
    assert sum(stray.values()) == 0, stray
