"""Issue 24, GPT tab: the new routes (/gpt_continue, /gpt_attention, /gpt_logit_lens) through
gradio_client, their handlers and ZeroGPU slots, and the views in a real browser."""

from __future__ import annotations

import ast

import pytest
from gradio_client.exceptions import AppError

from playground.core import zerogpu
from playground.gpt import tab_inside
from tests.conftest import assert_image_in_view, open_tab
from tests.test_gpt_support import tiny_model_dir

ARGS = dict(use_chat=True, max_new_tokens=8, temperature=0.9, top_k=0, top_p=0.95,
            repetition_penalty=1.0, stop="", seed=11, randomize=False, min_p=0.05)


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    tiny_model_dir(str(tmp_path_factory.getbasetemp()))  # registered in this (the app's) process
    return "test-tiny-gpt"


@pytest.fixture(scope="module")
def generated(client, tiny_name):
    return client.predict(model=tiny_name, prompt="the lady said", api_name="/gpt_generate",
                          **ARGS)


def test_generate_route_takes_min_p_and_records_it(generated):
    text, _, _, details = generated
    assert text == details["text"] and details["record"]["params"]["min_p"] == 0.05
    assert len(details["prompt_ids"]) == len(details["prompt_tokens"]) >= 2


def test_continue_route_branches_with_the_same_seed(client, generated):
    _, _, _, details = generated
    text, _, info, branched = client.predict(details=details, position=2, choice=3,
                                             api_name="/gpt_continue")
    record = branched["record"]
    assert record["seed"] == 11 and record["params"]["branch"]["position"] == 2
    assert record["params"]["branch"]["choice"] == 3 and "branched at token 2" in info
    assert branched["tokens"][0]["id"] == details["tokens"][0]["id"]
    assert text.startswith(details["tokens"][0]["token"] + branched["tokens"][1]["token"])
    again = client.predict(details=details, position=2, choice=3, api_name="/gpt_continue")
    assert again[0] == text


def test_attention_route_returns_a_picture_and_the_weights(client, generated):
    from PIL import Image

    _, _, _, details = generated
    position = len(details["prompt_ids"]) + 1
    image, note, data = client.predict(details=details, position=position,
                                       api_name="/gpt_attention")
    with Image.open(image) as picture:
        assert picture.width > 200 and picture.height > 80
        assert '"view": "attention"' in picture.text["playground"]
    assert "2 layers × 2 heads" in note and data["position"] == position
    weights = data["weights"]  # (layers, heads, keys)
    assert len(weights) == 2 and len(weights[0]) == 2 and len(weights[0][0]) == position + 1
    assert all(sum(row) == pytest.approx(1, abs=1e-3) for layer in weights for row in layer)


def test_logit_lens_route_returns_a_table(client, generated):
    _, _, _, details = generated
    table, note, data = client.predict(details=details, position=1, api_name="/gpt_logit_lens")
    assert table["headers"][0] == "layer" and [r[0] for r in table["data"]] == [
        "embeddings", "layer 1", "layer 2"]
    assert "Logit lens at token 1" in note and data["max_diff"] < 1e-5
    probs = [float(cell.rsplit(" ", 1)[1]) for cell in table["data"][-1][1:6]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


@pytest.mark.parametrize(("route", "kwargs", "message"), [
    ("/gpt_attention", {"details": {}, "position": 0}, "Generate a text first"),
    ("/gpt_logit_lens", {"details": None, "position": 0}, "Generate a text first"),
    ("/gpt_continue", {"details": {}, "position": 1, "choice": 1}, "Generate a text first")])
def test_routes_without_a_generation_say_so(client, route, kwargs, message):
    with pytest.raises(AppError, match=message):
        client.predict(api_name=route, **kwargs)


def test_routes_refuse_bad_positions(client, generated):
    _, _, _, details = generated
    with pytest.raises(AppError, match="Position"):
        client.predict(details=details, position=999, api_name="/gpt_attention")
    with pytest.raises(AppError, match="Choice"):
        client.predict(details=details, position=1, choice=99, api_name="/gpt_continue")


def test_model_handlers_ask_for_a_gpu_slot_and_the_strip_does_not():
    """The views that run the model are GPU handlers; the token strip and the alternatives
    table only read the details (no model, no slot)."""
    names = {k for k in zerogpu.HANDLERS if k.startswith("playground.gpt.")}
    assert names == {"playground.gpt.tab.generate_text", *(
        f"playground.gpt.tab_inside.{n}"
        for n in ("continue_text", "show_attention", "show_logit_lens"))}
    slot = zerogpu.HANDLERS["playground.gpt.tab_inside.continue_text"].duration
    short, long = ({"record": {"params": {"max_new_tokens": n}}} for n in (10, 1000))
    assert slot(short, 1, 1) < slot(long, 1, 1) <= zerogpu.MAX_DURATION_S
    assert zerogpu.MIN_DURATION_S <= slot("garbage", 1, 1) <= zerogpu.MAX_DURATION_S


def test_context_strip_lists_prompt_then_generated_tokens(generated):
    _, _, _, details = generated
    pairs = tab_inside.context_tokens(details)
    n_prompt = len(details["prompt_ids"])
    assert [part for _, part in pairs] == ["prompt"] * n_prompt + ["generated"] * len(
        details["tokens"])
    assert tab_inside.context_tokens(None) == []


@pytest.mark.browser
def test_browser_inside_views_and_continue_from_an_alternative(page):
    open_tab(page, "Text (GPT)")
    page.get_by_label("Prompt", exact=True).filter(visible=True).fill("Mr. Darcy")
    max_new = page.get_by_label("number input for Max new tokens").filter(visible=True)
    max_new.fill("8")
    max_new.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).filter(visible=True).click()
    page.get_by_text("Seed used:").filter(visible=True).wait_for(timeout=120_000)
    strip = page.locator("#gpt-inside-tokens .token.highlighted").filter(visible=True)
    strip.nth(3).wait_for(timeout=30_000)
    strip.nth(3).click()
    page.locator("#gpt-attention img").wait_for(timeout=60_000)
    assert_image_in_view(page, "#gpt-attention", 80)
    lens = page.locator("#gpt-lens").filter(visible=True)
    page.wait_for_function("el => /layer 6/.test(el.innerText) && "
                           "(el.innerText.match(/0\\.\\d{3}/g) || []).length >= 30",
                           arg=lens.element_handle(), timeout=60_000)
    assert "embeddings" in lens.inner_text()
    # continue: click the first generated token, then a row of its top-10 table with another
    # token than the one drawn; the text then starts with the chosen token
    tokens = page.locator("[data-testid=highlighted-text] .token.highlighted").filter(
        visible=True)
    drawn = tokens.first.inner_text()
    tokens.first.click()
    page.get_by_text("had probability").filter(visible=True).wait_for(timeout=30_000)
    table = page.locator(".block", has_text="Top-10 here").filter(visible=True).last
    cells = [table.locator(f"[data-testid=cell-{i}-0]") for i in range(3)]  # rows 1-3
    cell = next(c for c in cells if ast.literal_eval(c.inner_text().strip()) != drawn)
    chosen = ast.literal_eval(cell.inner_text().strip())  # the rows show repr(token)
    cell.click()
    page.get_by_text("branched at token 1").filter(visible=True).wait_for(timeout=120_000)
    text = page.get_by_label("Generated text").filter(visible=True).input_value()
    assert text.startswith(chosen)
