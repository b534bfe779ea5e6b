"""The GPT tab end to end: the /gpt_generate API and a real browser generating text."""

from __future__ import annotations

import re

import pytest
from gradio_client.exceptions import AppError

from tests.conftest import fill_field, open_tab
from tests.test_gpt_support import tiny_model_dir

ARGS = dict(use_chat=True, max_new_tokens=10, temperature=0.9, top_k=0, top_p=0.95,
            repetition_penalty=1.0, stop="", seed=11, randomize=False)


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    tiny_model_dir(str(tmp_path_factory.getbasetemp()))  # registered in this (the app's) process
    return "test-tiny-gpt"


def test_api_returns_text_and_token_probabilities(client, tiny_name):
    text, tokens, info, details = client.predict(model=tiny_name, prompt="the lady said",
                                                 api_name="/gpt_generate", **ARGS)
    assert text and text == details["text"] == "".join(t["token"] for t in details["tokens"])
    assert 1 <= len(details["tokens"]) <= 10
    for tok in details["tokens"]:
        assert 0 < tok["p"] <= 1 and 0 < tok["p_sampled"] <= 1
        assert len(tok["top_before"]) == 10
    assert tokens[0]["token"] == "the lady said" and tokens[0]["class_or_confidence"] is None
    assert "Seed used:** 11" in info and details["record"]["seed"] == 11
    again = client.predict(model=tiny_name, prompt="the lady said", api_name="/gpt_generate",
                           **ARGS)
    assert again[0] == text


@pytest.mark.parametrize(("prompt", "change", "message"), [
    ("", {}, "Enter a prompt"), ("x" * 100_000, {}, "too long"),
    # sliders refuse out-of-range values themselves, with their own clear message
    ("the", {"max_new_tokens": 10**6}, "Max new tokens|greater than maximum value 1000"),
    ("the", {"temperature": -1}, "Temperature|less than minimum value 0"),
    ("the", {"top_p": 0}, "Top-p|less than minimum value 0.01"),
    ("the", {"top_p": 1.5}, "Top-p|greater than maximum value 1")])
def test_api_bad_input_gives_a_message_and_the_server_keeps_serving(client, tiny_name, prompt,
                                                                     change, message):
    with pytest.raises(AppError, match=message):
        client.predict(model=tiny_name, prompt=prompt, api_name="/gpt_generate",
                       **{**ARGS, **change})
    assert client.predict(model=tiny_name, prompt="the", api_name="/gpt_generate", **ARGS)[0]


def test_api_refuses_a_binary_upload(client):
    import tempfile

    from gradio_client import handle_file

    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as handle:
        handle.write(b"\x89PNG\r\n\x1a\n\0\0\0" * 400)
    with pytest.raises(AppError, match="binary"):
        client.predict(file=handle_file(handle.name), mode="new", steps=20, seed=0,
                       randomize=False, api_name="/gpt_train")


@pytest.mark.browser
def test_browser_generates_coloured_tokens_and_shows_alternatives(page):
    open_tab(page, "Text (GPT)")
    page.get_by_label("Prompt", exact=True).filter(visible=True).fill("Mr. Darcy")
    max_new = page.get_by_label("number input for Max new tokens").filter(visible=True)
    max_new.fill("12")
    max_new.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).filter(visible=True).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('textarea')].some(t => "
        "t.closest('label')?.innerText.includes('Generated text') && t.value.trim().length > 3)",
        timeout=120_000)
    page.get_by_text("Seed used:").filter(visible=True).wait_for(timeout=60_000)
    tokens = page.locator("[data-testid=highlighted-text] .token.highlighted").filter(visible=True)
    assert tokens.count() >= 2
    tokens.nth(1).click()
    page.get_by_text("had probability").filter(visible=True).wait_for(timeout=30_000)
    table = page.locator(".block", has_text="Top-10 here").filter(visible=True).last
    page.wait_for_function("el => (el.innerText.match(/0\\.\\d+/g) || []).length >= 10",
                           arg=table.element_handle(), timeout=30_000)
    probs = [float(x) for x in re.findall(r"\b0\.\d+", table.inner_text())]
    assert len(probs) >= 10 and all(0 <= p <= 1 for p in probs)


@pytest.mark.browser
def test_browser_trains_on_an_upload_and_offers_the_result(page, tmp_path):
    from tests.test_gpt_support import tiny_text

    upload = tmp_path / "my_text.txt"
    upload.write_text(tiny_text(150))
    open_tab(page, "Text (GPT)")
    page.get_by_text("Train on your own text").filter(visible=True).click()
    page.locator("#gpt-upload input[type=file]").set_input_files(str(upload))
    page.locator("#gpt-upload").get_by_text("my_text.txt").wait_for()  # uploaded
    # typed into a just-opened accordion: retyped until the box keeps it (else the default
    # 300 steps run, past the wait below)
    fill_field(page, "#gpt-train-steps input[type=number]", "20")
    page.get_by_role("button", name="Train", exact=True).filter(visible=True).click()
    done = page.get_by_text("It is now in the model list above").filter(visible=True)
    try:
        done.wait_for(timeout=120_000)
    except Exception as error:  # say where the run was, not only that it was late
        status = page.locator("#gpt-train-status").inner_text()
        raise AssertionError(f"training did not finish in 120 s; status: {status!r}") from error
    name = re.search(r"my-gpt-[0-9a-f]{6}", page.get_by_text("It is now in the model list")
                     .filter(visible=True).inner_text()).group(0)
    assert page.get_by_label("Model", exact=True).filter(visible=True).first.input_value() == name


@pytest.mark.browser
def test_browser_share_link_reopens_the_result_with_its_settings(page, browser, app_url):
    """The tab's gr.DeepLinkButton: its link opens the page with the prompt and the text."""
    open_tab(page, "Text (GPT)")
    page.get_by_label("Prompt", exact=True).filter(visible=True).fill("Elizabeth smiled")
    max_new = page.get_by_label("number input for Max new tokens").filter(visible=True)
    max_new.fill("8")
    max_new.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).filter(visible=True).click()
    page.get_by_text("Seed used:").filter(visible=True).wait_for(timeout=120_000)
    text = page.get_by_label("Generated text").filter(visible=True).input_value()
    assert text.strip()
    page.get_by_role("button", name="Share via Link").filter(visible=True).click()
    page.get_by_role("button", name="Link Copied!").filter(visible=True).wait_for(timeout=10_000)
    link = page.evaluate("() => fetch('gradio_api/deep_link?session_hash=' + "
                         "window.__gradio_session_hash__).then(r => r.json())")
    assert re.fullmatch(r"[\w-]+", link), link
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        other = context.new_page()
        other.goto(f"{app_url}/?deep_link={link}")
        other.wait_for_selector("button[role='tab']")
        open_tab(other, "Text (GPT)")
        assert other.get_by_label("Generated text").filter(visible=True).input_value() == text
        assert other.get_by_label("Prompt", exact=True).filter(
            visible=True).input_value() == "Elizabeth smiled"
        assert other.get_by_label("number input for Max new tokens").filter(
            visible=True).input_value() == "8"
    finally:
        context.close()
