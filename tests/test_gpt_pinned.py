"""Pinned outputs of the shipped weights/gpt-austen (diffusers' ``expected_slice`` habit).

The numbers were recorded on the code before the issue-25 refactor; a silent numeric change in a
refactor or an upgrade fails here. The seeded continuation is the opening of the model card's
first sample ("It is a truth universally acknowledged, that I always believe you see him").
"""

from __future__ import annotations

import pytest
import torch

from playground.core.registry import WEIGHTS_DIR

FOLDER = WEIGHTS_DIR / "gpt-austen"
PROMPT = "It is a truth universally acknowledged, that"
PROMPT_IDS = [919, 365, 259, 1919, 6995, 3060, 12, 339]
# position -> (logits of token ids 0, 1, 2; arg-max id; max logit)
LOGITS = {0: ([-9.7292, 1.2542, -2.0443], 309, 9.7755),
          4: ([-5.9819, 2.1482, -2.7040], 199, 6.4732),
          7: ([-10.8514, 0.7203, -1.5180], 302, 7.7222)}
GREEDY_IDS = [302, 446, 199, 745, 275, 289, 294, 269]  # " I am\nnot to be in the"
SEEDED_IDS = [302, 764, 1044, 323, 474, 372, 199, 444]  # seed 0, temperature 0.8, top-p 0.95
SEEDED_P = [0.2588, 0.0043, 0.0364, 0.0679, 0.0047, 0.0556, 0.2176, 0.0006]
PROMPT_PERPLEXITY = 174.9941  # tokens 2..8 given the ones before (366.77 when a BOS scored token 1)

pytestmark = pytest.mark.skipif(not FOLDER.exists(), reason="weights/gpt-austen not installed")


def test_logits_of_a_fixed_prompt_are_pinned():
    from playground.gpt.evaluate import load_local

    model, tok = load_local(str(FOLDER))
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == PROMPT_IDS
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    for pos, (first, argmax, top) in LOGITS.items():
        assert logits[pos, :3].tolist() == pytest.approx(first, abs=2e-3), pos
        assert int(logits[pos].argmax()) == argmax
        assert float(logits[pos].max()) == pytest.approx(top, abs=2e-3)


def _generate(**knobs):
    from playground.gpt import inference, register_models

    register_models()
    return inference.generate("gpt-austen", PROMPT, max_new_tokens=8, seed=0, **knobs)


def test_greedy_and_seeded_continuations_are_pinned():
    greedy = _generate(temperature=0)
    assert [t.id for t in greedy.tokens] == GREEDY_IDS
    seeded = _generate(temperature=0.8, top_p=0.95)
    assert [t.id for t in seeded.tokens] == SEEDED_IDS
    assert [t.p for t in seeded.tokens] == pytest.approx(SEEDED_P, abs=2e-4)
    assert seeded.prompt.perplexity == pytest.approx(PROMPT_PERPLEXITY, rel=1e-3)
