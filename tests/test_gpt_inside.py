"""Issue 24, GPT: min-p sampling, continuing from an alternative, attention and the logit lens,
each with known answers (a tiny trained GPT-2 and a tiny random Llama, SmolLM2's architecture)."""

from __future__ import annotations

import json

import pytest
import torch

from playground.core import registry, repro
from playground.core.errors import UserInputError
from playground.gpt import branch, inference, inside
from playground.gpt.sampling import SamplingSettings, SeededSampler, distributions, table_rows
from tests.test_gpt_support import tiny_model_dir

GPT, LLAMA = "test-tiny-gpt", "test-tiny-llama"
KNOBS = dict(max_new_tokens=10, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module", autouse=True)
def models(tmp_path_factory):
    """The tiny trained GPT-2, and a random 2-layer Llama (GQA: 4 heads, 2 key/value heads)
    with its tokenizer, saved and registered like a session-trained model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gpt_dir = tiny_model_dir(str(tmp_path_factory.getbasetemp()))
    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(gpt_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    registry.register(registry.ModelEntry(LLAMA, "gpt", path=folder))
    return gpt_dir, folder


# ---- min-p ------------------------------------------------------------------------------------

PROBS = torch.tensor([0.5, 0.2, 0.12, 0.1, 0.05, 0.03])  # p_max = 0.5; no ties at these min-p


@pytest.mark.parametrize(("min_p", "kept"), [(0.05, 6), (0.07, 5), (0.22, 3), (0.3, 2),
                                             (0.5, 1), (1.0, 1)])
def test_min_p_keeps_exactly_the_tokens_above_min_p_times_the_top(min_p, kept):
    _, after = distributions(torch.tensor([[0]]), PROBS.log()[None],
                             SamplingSettings(temperature=1.0, min_p=min_p))
    assert (after[0] > 0).tolist() == [True] * kept + [False] * (6 - kept)
    assert after[0, :kept].tolist() == pytest.approx((PROBS[:kept] / PROBS[:kept].sum()).tolist(),
                                                     abs=1e-6)


def test_min_p_applies_after_temperature_as_in_transformers():
    """At temperature 2 the distribution flattens (p ∝ √p), so min-p 0.5 keeps two tokens
    (√.5 = .707, √.2 = .447 ≥ .354; √.12 = .346 is not) where temperature 1 keeps one."""
    logits = PROBS.log()[None]
    tempered = torch.softmax(logits / 2, -1)[0]
    expected = (tempered >= 0.5 * tempered.max()).tolist()
    _, after = distributions(torch.tensor([[0]]), logits,
                             SamplingSettings(temperature=2.0, min_p=0.5))
    assert (after[0] > 0).tolist() == expected == [True, True] + [False] * 4


def test_min_p_sampler_draws_only_kept_tokens_and_is_seeded():
    from playground.core.seeding import make_generator

    def draws(seed):
        sampler = SeededSampler(SamplingSettings(temperature=1.0, min_p=0.22), make_generator(seed))
        return [int(sampler(torch.tensor([[0]]), PROBS.log()[None].clone()).argmax())
                for _ in range(300)]

    a = draws(3)
    assert set(a) == {0, 1, 2} and a == draws(3) and a != draws(4)


def test_min_p_generation_same_seed_same_text_and_recorded():
    a = inference.generate(GPT, "the lady", seed=2, min_p=0.1, **KNOBS)
    b = inference.generate(GPT, "the lady", seed=2, min_p=0.1, **KNOBS)
    assert a.text == b.text and a.record["params"]["min_p"] == 0.1
    for t in a.tokens:  # every drawn token passed the min-p filter
        assert t.p >= 0.1 * t.top_before[0][1] - 1e-6


@pytest.mark.parametrize("bad", [-0.1, 1.5, "lots"])
def test_min_p_out_of_range_is_refused(bad):
    with pytest.raises(UserInputError, match="Min-p"):
        inference.generate(GPT, "the lady", min_p=bad, **KNOBS)


# ---- continue from an alternative -------------------------------------------------------------

def _details(result) -> dict:
    return json.loads(json.dumps(result.details()))  # as an API client sends it back


def _row_ids(token) -> list[int]:
    before = list(zip(token.ids_before, [p for _, p in token.top_before], strict=True))
    after = list(zip(token.ids_after, [p for _, p in token.top_after], strict=True))
    return [key for key, _, _ in table_rows(before, after)]


@pytest.mark.parametrize("model", [GPT, LLAMA])
def test_branching_on_the_drawn_token_gives_the_original_text_back(model):
    knobs = {**KNOBS, "top_k": 5}  # the drawn token is then always a row of the table
    original = inference.generate(model, "the lady", seed=5, **knobs)
    k = 4
    row = _row_ids(original.tokens[k - 1]).index(original.tokens[k - 1].id) + 1
    again = branch.generate_continue(_details(original), k, row)
    assert again.text == original.text
    assert [t.id for t in again.tokens] == [t.id for t in original.tokens]
    assert again.tokens[:k] == original.tokens[:k]  # the replayed odds are the same too


def test_branch_starts_with_the_chosen_token_and_records_where_it_branched():
    original = inference.generate(GPT, "the lady", seed=6, **KNOBS)
    k, tok = 3, original.tokens[2]
    row = next(r for r, i in enumerate(_row_ids(tok), 1) if i != tok.id)
    chosen = _row_ids(tok)[row - 1]
    result = branch.generate_continue(_details(original), k, row)
    assert [t.id for t in result.tokens[:k - 1]] == [t.id for t in original.tokens[:k - 1]]
    assert result.tokens[k - 1].id == chosen
    prefix = "".join(t.token for t in original.tokens[:k - 1])
    assert result.text.startswith(prefix + result.tokens[k - 1].token)
    assert result.tokens[k - 1].token == inference.token_text(
        inference.load_language_model(GPT).tokenizer, chosen)
    if chosen in tok.ids_before:  # its odds are those the original recorded for that row
        p_before = tok.top_before[tok.ids_before.index(chosen)][1]
        assert result.tokens[k - 1].p == pytest.approx(p_before, abs=1e-6)
    b = result.record["params"]["branch"]
    assert (b["position"], b["choice"], b["token_id"], b["replaced_id"]) == (k, row, chosen,
                                                                              tok.id)
    assert b["prefix_ids"] == [t.id for t in original.tokens[:k - 1]]
    assert result.record["seed"] == 6 and result.record["params"]["prompt"] == "the lady"
    assert len(result.tokens) <= KNOBS["max_new_tokens"]
    assert branch.generate_continue(_details(original), k, row).text == result.text  # same seed


def test_greedy_branch_takes_the_second_likeliest_token():
    original = inference.generate(GPT, "the lady", seed=0, **{**KNOBS, "temperature": 0})
    result = branch.generate_continue(_details(original), 1, 2)
    assert result.tokens[0].id == original.tokens[0].ids_before[1]
    assert result.tokens[0].p_sampled == 0.0  # greedy would never have drawn it
    assert all(t.p_sampled == 1.0 for t in result.tokens[1:])  # then greedy again


@pytest.mark.parametrize(("position", "choice", "message"), [
    (0, 1, "Position"), (99, 1, "Position"), (1, 0, "Choice"), (1, 50, "Choice"),
    ("x", 1, "Position")])
def test_bad_branch_requests_are_refused(position, choice, message):
    original = inference.generate(GPT, "the lady", seed=1, **KNOBS)
    with pytest.raises(UserInputError, match=message):
        branch.generate_continue(_details(original), position, choice)


@pytest.mark.parametrize("details", [None, {}, "not json", {"tokens": [{"id": 1}]},
                                     {"tokens": [{"id": -4}], "record": {"model": GPT}}])
def test_continue_without_a_generation_says_what_is_needed(details):
    with pytest.raises(UserInputError, match="Generate a text first|token ids|record"):
        branch.generate_continue(details, 1, 1)


# ---- attention --------------------------------------------------------------------------------

def _ids(model: str, text: str = "the lady said that her sister was very kind") -> torch.Tensor:
    return inference.load_language_model(model).tokenizer(text, return_tensors="pt")["input_ids"]


@pytest.mark.parametrize("model", [GPT, LLAMA])
def test_attention_rows_sum_to_one_and_are_causal(model):
    lm = inference.load_language_model(model)
    implementation = lm.model.config._attn_implementation
    ids = _ids(model)
    weights = inside.attention_weights(lm.model, ids)
    cfg = lm.model.config
    assert weights.shape == (cfg.num_hidden_layers, cfg.num_attention_heads, ids.shape[1],
                             ids.shape[1])
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)
    later = torch.triu(torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool), diagonal=1)
    assert float(weights[..., later].abs().max()) == 0.0
    assert float(weights[..., ~later].min()) > 0
    assert lm.model.config._attn_implementation == implementation  # switched back


@pytest.mark.parametrize("model", [GPT, LLAMA])
def test_attention_view_is_the_row_of_the_clicked_token(model):
    result = inference.generate(model, "the lady said", seed=3, **KNOBS)
    details = _details(result)
    ids = details["prompt_ids"] + [t.id for t in result.tokens]
    position = len(ids) - 2
    view = inside.attention_view(details, position)
    full = inside.attention_weights(inference.load_language_model(model).model,
                                    torch.tensor([ids]))
    assert view.available and view.weights.shape[-1] == len(view.keys) == position + 1
    assert view.weights == pytest.approx(full[:, :, position, :position + 1].numpy(), abs=1e-5)
    record = repro.read_png_record(view.image)
    assert record["params"]["position"] == position and record["params"]["token_ids"] == ids
    again = inside.attention_view(details, position)
    assert (again.weights == view.weights).all() and again.record == view.record
    assert view.details()["weights"][0][0][-1] == pytest.approx(float(view.weights[0, 0, -1]),
                                                                abs=1e-4)


def test_long_contexts_show_the_first_token_and_the_last_ones(monkeypatch):
    monkeypatch.setattr(inside, "MAX_KEYS", 4)
    result = inference.generate(GPT, "the lady said that", seed=3, **KNOBS)
    details = _details(result)
    view = inside.attention_view(details, 9)
    assert view.key_positions == [0, 7, 8, 9] and view.weights.shape[-1] == 4
    full = inside.attention_weights(inference.load_language_model(GPT).model,
                                    torch.tensor([details["prompt_ids"] + [t.id for t in
                                                                          result.tokens]]))
    row = full[:, :, 9, :10]
    assert view.weights == pytest.approx(row[:, :, [0, 7, 8, 9]].numpy(), abs=1e-5)
    hidden = float(row[:, :, 1:7].sum(-1).mean())
    assert f"the 6 tokens between the first and the last 3 are not drawn (they hold " \
           f"{hidden:.0%}" in view.note
    assert inside.attention_view(details, 3).key_positions == [0, 1, 2, 3]


def test_a_model_without_attention_weights_says_so(monkeypatch):
    lm = inference.load_language_model(LLAMA)
    if lm.model.config._attn_implementation == "eager":
        pytest.skip("loaded with eager attention here")
    monkeypatch.setattr(lm.model, "set_attn_implementation", lambda *a, **k: None)
    details = _details(inference.generate(LLAMA, "the lady", seed=3, **KNOBS))
    view = inside.attention_view(details, 2)
    assert not view.available and "no attention weights" in view.note and view.image is None


# ---- logit lens -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [GPT, LLAMA])
def test_logit_lens_at_the_last_layer_is_the_models_output(model):
    lm = inference.load_language_model(model)
    ids = _ids(model)
    lens, own = inside.lens_distributions(lm.model, ids)
    with torch.no_grad():
        reference = torch.softmax(lm.model(input_ids=ids).logits[0, -1].float(), -1)
    assert lens.shape == (lm.model.config.num_hidden_layers + 1, reference.shape[-1])
    assert float((lens[-1] - reference).abs().max()) < 1e-5
    assert float((own - reference).abs().max()) < 1e-6
    assert torch.allclose(lens.sum(-1), torch.ones(lens.shape[0]), atol=1e-5)
    if model == GPT:  # trained: the bare embeddings predict otherwise (the random Llama is flat)
        assert float((lens[0] - reference).abs().max()) > 1e-3


def test_logit_lens_view_rows_and_the_next_token():
    result = inference.generate(GPT, "the lady said", seed=4, **KNOBS)
    details = _details(result)
    position = len(details["prompt_ids"]) + 1  # the second generated token
    lens = inside.logit_lens(details, position)
    assert lens.available and lens.max_diff < 1e-5
    assert [r.layer for r in lens.rows] == ["embeddings", "layer 1", "layer 2"]
    assert lens.next_token == result.tokens[2].token
    # the last row is the model's own top-5 at that token, and p(next) its recorded p
    own = sorted(result.tokens[2].top_before, key=lambda tp: -tp[1])[:5]
    assert [t for t, _ in lens.rows[-1].top] == [t for t, _ in own]
    assert [p for _, p in lens.rows[-1].top] == pytest.approx([p for _, p in own], abs=1e-5)
    assert lens.rows[-1].p_next == pytest.approx(result.tokens[2].p, abs=1e-5)
    headers, rows = lens.table()
    assert headers[0] == "layer" and len(rows) == 3 and len(rows[0]) == 7
    assert lens.record["params"]["view"] == "logit_lens"
    last = inside.logit_lens(details, len(details["prompt_ids"]) + len(result.tokens) - 1)
    assert last.next_token is None and last.rows[-1].p_next is None


def test_unknown_architecture_gets_a_message_not_a_failure(monkeypatch):
    monkeypatch.setattr(inside, "NORM_NAMES", ())
    details = _details(inference.generate(GPT, "the lady", seed=3, **KNOBS))
    lens = inside.logit_lens(details, 1)
    assert not lens.available and "final norm" in lens.note and lens.rows == []


@pytest.mark.parametrize(("position", "message"), [(-1, "Position"), (10_000, "Position"),
                                                   (1.5, "Position")])
def test_inside_views_refuse_a_bad_position(position, message):
    details = _details(inference.generate(GPT, "the lady", seed=3, **KNOBS))
    for view in (inside.attention_view, inside.logit_lens):
        with pytest.raises(UserInputError, match=message):
            view(details, position)


def test_inside_views_refuse_ids_of_another_model():
    details = _details(inference.generate(GPT, "the lady", seed=3, **KNOBS))
    details["prompt_ids"] = [10**6]
    with pytest.raises(UserInputError, match="another model"):
        inside.logit_lens(details, 0)
