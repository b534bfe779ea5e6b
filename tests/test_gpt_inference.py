"""GPT generation: determinism, streaming, recorded probabilities, stop text, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from playground.core.errors import UserInputError
from playground.gpt import inference
from tests.test_gpt_support import tiny_model_dir

NAME = "test-tiny-gpt"
KNOBS = dict(max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module", autouse=True)
def tiny_model(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.getbasetemp()))


def test_same_seed_same_text_and_greedy_is_seed_free():
    a = inference.generate(NAME, "the lady", seed=7, **KNOBS)
    b = inference.generate(NAME, "the lady", seed=7, **KNOBS)
    c = inference.generate(NAME, "the lady", seed=8, **KNOBS)
    assert a.text == b.text and a.tokens == b.tokens
    assert a.text != c.text
    g1 = inference.generate(NAME, "the lady", seed=1, **{**KNOBS, "temperature": 0})
    g2 = inference.generate(NAME, "the lady", seed=2, **{**KNOBS, "temperature": 0})
    assert g1.text == g2.text and all(t.p_sampled == 1.0 for t in g1.tokens)
    assert a.record["seed"] == 7 and a.record["params"]["max_new_tokens"] == 12


def test_streaming_yields_growing_text_before_the_end(monkeypatch):
    from playground.gpt import sampling

    monkeypatch.setattr(sampling, "HAND_OVER_S", 0.0)  # every token's text on its own
    items = list(inference.stream_generate(NAME, "the lady", seed=3, **KNOBS))
    partial = [i.text for i in items if not i.done]
    assert items[-1].done and len(partial) >= 3
    assert all(b.startswith(a) for a, b in zip(partial, partial[1:], strict=False))
    assert len(set(partial)) >= 3 and items[-1].text.startswith(partial[-1].rstrip())


def test_text_closer_together_than_the_hand_over_interval_comes_in_one_piece(monkeypatch):
    """The first token's text goes out at once; later text waits until HAND_OVER_S has passed
    since the last hand-over (or the end), and nothing is lost."""
    from playground.gpt import sampling

    monkeypatch.setattr(sampling, "HAND_OVER_S", 60.0)
    items = list(inference.stream_generate(NAME, "the lady", seed=3, **KNOBS))
    partial = [i.text for i in items if not i.done]
    assert len(partial) == 2 and len(partial[0]) < len(partial[1])
    assert items[-1].text.startswith(partial[-1].rstrip())


def test_recorded_probabilities_match_the_model():
    from playground.gpt.sampling import SamplingSettings, distributions

    result = inference.generate(NAME, "the lady", seed=4, **{**KNOBS, "top_k": 5})
    lm = inference.load_language_model(NAME)
    tok = lm.tokenizer
    ids = tok("the lady", return_tensors="pt")["input_ids"]
    assert "".join(t.token for t in result.tokens) == result.text
    for t in result.tokens[:5]:
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[:, -1]
        before, after = distributions(ids, logits, SamplingSettings(1.0, 5, 1.0, 1.0))
        assert float(before.sum()) == pytest.approx(1, abs=1e-5)
        assert t.p == pytest.approx(float(before[0, t.id]), abs=1e-5)
        assert t.p_sampled == pytest.approx(float(after[0, t.id]), abs=1e-5)
        assert len(t.top_after) == 5 and sum(p for _, p in t.top_after) == \
            pytest.approx(1, abs=1e-5)
        assert [p for _, p in t.top_before] == sorted([p for _, p in t.top_before],
                                                        reverse=True)
        ids = torch.cat([ids, torch.tensor([[t.id]])], 1)


def test_stop_text_ends_the_output_before_it():
    free = inference.generate(NAME, "the lady", seed=5, **{**KNOBS, "max_new_tokens": 16})
    words = free.text.split()
    assert len(words) >= 3
    stop = " " + words[2]
    cut = inference.generate(NAME, "the lady", seed=5, stop=stop,
                             **{**KNOBS, "max_new_tokens": 16})
    assert stop not in cut.text and free.text.startswith(cut.text)
    assert len(cut.tokens) < len(free.tokens)


def test_prompt_perplexity_prefers_familiar_text():
    lm = inference.load_language_model(NAME)
    seen = inference.prompt_perplexity(lm, "the lady said that her sister was very kind")
    noise = inference.prompt_perplexity(lm, "qzx vwpk jjf ooqz xkcd zzyzx")
    assert 1 < seen.perplexity < noise.perplexity


@pytest.mark.parametrize(("prompt", "knobs", "message"), [
    ("", {}, "Enter a prompt"),
    ("   \n", {}, "Enter a prompt"),
    ("x" * 100_000, {}, "too long"),
    ("the", {"max_new_tokens": 0}, "Max new tokens"),
    ("the", {"max_new_tokens": 10**6}, "Max new tokens"),
    ("the", {"temperature": -0.5}, "Temperature"),
    ("the", {"top_p": 0}, "Top-p"),
    ("the", {"top_p": 1.5}, "Top-p"),
    ("the", {"top_k": -1}, "Top-k"),
    ("the", {"repetition_penalty": 0.5}, "Repetition penalty"),
])
def test_bad_input_is_refused_with_a_clear_message(prompt, knobs, message):
    with pytest.raises(UserInputError, match=message):
        inference.generate(NAME, prompt, **{**KNOBS, **knobs})


def test_long_request_is_capped_to_the_context():
    result = inference.generate(NAME, "the lady " * 40, seed=0,
                                **{**KNOBS, "max_new_tokens": 500})
    assert any("capped" in n for n in result.notes)
    assert any("prompt cut" in n for n in result.notes)
    assert 0 < len(result.tokens) <= 32


def test_unknown_models_and_paths_are_refused():
    with pytest.raises(UserInputError, match="file paths are not accepted"):
        inference.generate("../../etc/passwd", "hello", **KNOBS)


def test_hub_id_offline_gives_a_clear_message_quickly():
    import time

    from playground.core.errors import ModelLoadError
    from playground.core.registry import hub_reachable

    if hub_reachable():
        pytest.skip("the hub is reachable here")
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="offline|cannot reach"):
        inference.generate("HuggingFaceTB/SmolLM2-135M-Instruct", "hello", **KNOBS)
    assert time.monotonic() - t0 < 10


def test_a_request_resolves_its_model_once(monkeypatch):
    from playground.core import registry

    calls = []
    resolve = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda *a: calls.append(a) or resolve(*a))
    result = inference.generate(NAME, "the lady", seed=1, **KNOBS)
    assert calls == [("gpt", NAME)] and result.record["seed"] == 1
    entry = resolve("gpt", NAME)  # a caller holding the entry resolves nothing
    calls.clear()
    assert inference.generate(entry, "the lady", seed=1, **KNOBS).text == result.text
    assert calls == []


def test_prompt_score_comes_from_the_generation_prefill_and_matches_the_labels_recipe():
    """The streamed run reads the prompt's score from the forward pass that starts the
    generation; it equals exp(model(ids, labels=ids).loss), the separate scorer's figure, and
    the generated tokens equal plain ``model.generate`` continuing from no cache."""
    lm = inference.load_language_model(NAME)
    prompt = "the lady said that her sister was very kind"
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = float(lm.model(input_ids=ids, labels=ids).loss)
    result = inference.generate(NAME, prompt, max_new_tokens=6, temperature=0, seed=0)
    assert result.prompt.perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    assert result.prompt.tokens == ids.shape[1] - 1
    alone = inference.prompt_perplexity(lm, prompt)
    assert alone.perplexity == pytest.approx(result.prompt.perplexity, rel=1e-5)
    assert alone.nats_per_char == pytest.approx(
        loss * (ids.shape[1] - 1) / len(lm.tokenizer.decode(ids[0, 1:])), rel=1e-5)
    plain = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              do_sample=False, max_new_tokens=6, min_new_tokens=6,
                              pad_token_id=lm.tokenizer.eos_token_id)
    assert [t.id for t in result.tokens] == plain[0, ids.shape[1]:].tolist()


def test_a_one_token_prompt_has_no_score_and_still_generates():
    lm = inference.load_language_model(NAME)
    assert len(lm.tokenizer("the")["input_ids"]) == 1
    result = inference.generate(NAME, "the", max_new_tokens=3, temperature=0, seed=0)
    assert result.prompt.perplexity is None and len(result.tokens) == 3


def test_the_streamer_hands_over_exactly_the_decoded_text_piece_by_piece(monkeypatch):
    """Incremental decoding over a short window joins back to ``tokenizer.decode`` of the
    whole, with characters split across tokens (accents, CJK, emoji) and runs of blank lines."""
    from playground.gpt import sampling
    from playground.gpt.sampling import TokenStreamer

    monkeypatch.setattr(sampling, "HAND_OVER_S", 0.0)

    tok = inference.load_language_model(NAME).tokenizer
    text = "Mr. Darcy said, “I am — café naïve 日本語 😀!”\n\n\nShe   smiled.\n“Yes.”\t"
    ids = tok(text)["input_ids"]
    streamer = TokenStreamer(tok, skip_prompt=False, skip_special_tokens=True)
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    pieces = [x for x in streamer.text_queue.queue if x is not None]
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces) and len(pieces) > 10


class _StripTokenizer:
    """A stand-in for a SentencePiece tokenizer: decoding drops the text's leading spaces, so
    a word decoded alone loses the space before it."""

    def __init__(self) -> None:
        self.vocab: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        import re

        ids = []
        for piece in re.findall(r"\s*\S+|\s+", text):
            if piece not in self.vocab:
                self.vocab.append(piece)
            ids.append(self.vocab.index(piece))
        return {"input_ids": ids}

    def decode(self, ids, **kwargs) -> str:
        return "".join(self.vocab[i] for i in ids).lstrip(" ")


def test_the_streamer_keeps_spaces_with_a_tokenizer_whose_words_decode_alone_without_them(
        monkeypatch):
    from playground.gpt import sampling

    monkeypatch.setattr(sampling, "HAND_OVER_S", 0.0)
    tok = _StripTokenizer()
    ids = tok("Hello big  world,\n\nsaid she")["input_ids"]
    assert sampling._single_texts(tok, {}) is None  # not joinable: the window decodes
    streamer = sampling.TokenStreamer(tok, skip_prompt=False)
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    pieces = [x for x in streamer.text_queue.queue if x is not None]
    assert "".join(pieces) == "Hello big  world,\n\nsaid she" and len(pieces) >= 5


def test_the_streamer_looks_seen_tokens_up_instead_of_decoding_them(monkeypatch):
    """A byte-level tokenizer joins one-token texts faithfully: once each token has been seen,
    streaming the same text again needs no decode call, and the text is still exact."""
    from playground.gpt import sampling

    monkeypatch.setattr(sampling, "HAND_OVER_S", 0.0)
    tok = inference.load_language_model(NAME).tokenizer
    assert sampling._single_texts(tok, {"skip_special_tokens": True}) is not None
    ids = tok("the lady said that her sister was very kind, and she smiled.")["input_ids"]

    def stream() -> str:
        streamer = sampling.TokenStreamer(tok, skip_prompt=False, skip_special_tokens=True)
        for i in ids:
            streamer.put(torch.tensor([i]))
        streamer.end()
        return "".join(x for x in streamer.text_queue.queue if x is not None)

    assert stream() == tok.decode(ids, skip_special_tokens=True)
    calls = []
    decode = tok.decode
    monkeypatch.setattr(tok, "decode", lambda *a, **k: calls.append(a) or decode(*a, **k))
    assert stream() == decode(ids, skip_special_tokens=True)
    assert calls == []
