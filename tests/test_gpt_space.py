"""The GPT tab as a Space: ZeroGPU slots sized from the request, preload, hub ids from a
(fake) hub through the tab and the API, with their commit sha in the record."""

from __future__ import annotations

import inspect
import sys
import time
import types

import pytest

from playground.core import registry, zerogpu
from playground.gpt import tab
from tests.test_gpt_support import tiny_model_dir

pytest_plugins = ["tests.hub_fixtures"]
TINY = "test-tiny-gpt"
HUB = "test/gpt-austen"  # weights/gpt-austen served by tests/fake_hub.py
HANDLER_ARGS = dict(use_chat=True, temperature=0.9, top_k=0, top_p=0.95, repetition_penalty=1.0,
                    stop="", seed=5, randomize=False)


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    tiny_model_dir(str(tmp_path_factory.getbasetemp()))
    return TINY


def _args(model: str, prompt: str, max_new_tokens) -> tuple:
    """generate_text's positional arguments, as gradio passes them (without the request)."""
    a = HANDLER_ARGS
    return (model, prompt, a["use_chat"], max_new_tokens, a["temperature"], a["top_k"],
            a["top_p"], a["repetition_penalty"], a["stop"], a["seed"], a["randomize"])


# ---- ZeroGPU ---------------------------------------------------------------------------------

def test_generate_is_a_gpu_handler_with_a_slot_growing_with_the_tokens():
    handler = zerogpu.HANDLERS["playground.gpt.tab.generate_text"]
    seconds = [handler.duration(*_args("gpt-austen", "Hello", n)) for n in (1, 120, 500, 1000)]
    assert all(zerogpu.MIN_DURATION_S <= s <= zerogpu.MAX_DURATION_S for s in seconds), seconds
    assert seconds == sorted(seconds) and seconds[0] < seconds[1] < seconds[-1], seconds
    assert seconds[0] <= 15 and seconds[-1] >= 60  # a short request queues first on ZeroGPU
    # gradio also passes the Progress object; a bad number gets the default slot, no crash
    assert handler.duration(*_args("gpt-austen", "Hi", 120), None) == seconds[1]
    assert zerogpu.MIN_DURATION_S <= handler.duration(*_args("x", "Hi", "lots")) <= 60


def test_only_model_handlers_ask_for_a_gpu():
    """Generation and the three views that run the model (continue from an alternative,
    attention, logit lens) ask for a GPU; the alternatives view reads the odds generate_text
    recorded and training runs in CPU worker processes: neither is a GPU handler, and the
    alternatives view never loads a model."""
    ours = {k for k in zerogpu.HANDLERS if k.startswith("playground.gpt.")}
    assert ours == {"playground.gpt.tab.generate_text", "playground.gpt.tab_inside.continue_text",
                    "playground.gpt.tab_inside.show_attention",
                    "playground.gpt.tab_inside.show_logit_lens"}
    fail = pytest.MonkeyPatch()
    fail.setattr(registry, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    try:
        from playground.gpt.inference import TokenInfo

        token = TokenInfo(" the", 1, 0.4, 0.5, [(" the", 0.4), (" a", 0.3)], [(" the", 0.5)])
        rows, caption = tab.show_alternatives([token], types.SimpleNamespace(index=1))
    finally:
        fail.undo()
    assert rows[0] == ["' the'", 0.4, 0.5] and "Token 1" in caption


def _fake_spaces(calls: list) -> types.ModuleType:
    """A stand-in for ``spaces`` built like its source (spaces/zero/decorator.py, wrappers.py):
    ``GPU(duration=f)`` computes ``f(*args, **kwargs)`` per call, and a generator function
    gets a generator wrapper that yields what the task yields."""
    module = types.ModuleType("spaces")

    def gpu(duration):
        def decorate(task):
            assert inspect.isgeneratorfunction(task)

            def gradio_handler(*args, **kwargs):
                calls.append(duration(*args, **kwargs))
                yield from task(*args, **kwargs)
            return gradio_handler
        return decorate
    module.GPU = gpu
    return module


def test_streaming_handler_through_a_zerogpu_style_generator_wrapper(tiny_name, monkeypatch):
    """On ZeroGPU ``generate_text`` (a generator) is wrapped by spaces' generator wrapper;
    under ``friendly`` it still streams, and the slot comes from the request's tokens."""
    from playground.ui import friendly

    calls: list[int] = []
    monkeypatch.setitem(sys.modules, "spaces", _fake_spaces(calls))
    monkeypatch.setattr(zerogpu, "on_zerogpu", lambda: True)
    monkeypatch.setattr(zerogpu, "HANDLERS", dict(zerogpu.HANDLERS))
    raw = tab.generate_text.__wrapped__  # the handler under friendly (a plain call here)
    on_zero = friendly(zerogpu.gpu_handler(tab.generate_seconds)(raw))
    assert inspect.isgeneratorfunction(on_zero)
    outputs = list(on_zero(*_args(tiny_name, "the lady said", 8)))
    assert calls == [zerogpu.clamp(tab.generate_seconds(tiny_name, "", True, 8))]
    text, tokens, info, details, _ = outputs[-1]
    assert len(outputs) >= 2 and text == details["text"] and "Seed used:** 5" in info


def test_preload_loads_the_shipped_model_into_the_cache(monkeypatch):
    import playground.gpt as gpt

    loaded = []
    load = registry.load_model
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: loaded.append(a[:2]) or
                        load(*a, **k))
    gpt.preload()
    entry = registry.resolve("gpt", gpt.SHIPPED)
    assert [(f, getattr(e, "name", e)) for f, e in loaded] == [("gpt", gpt.SHIPPED)]
    assert registry._CACHE.get(("gpt", entry.source, "")) is not None  # requests reuse it


# ---- hub ids (tests/fake_hub.py) -------------------------------------------------------------

@pytest.fixture
def cold_models(monkeypatch):
    """Nothing loaded or looked up yet in this process (the app's too: it is the same one)."""
    monkeypatch.setattr(registry, "_CACHE", registry._LRU(6))
    monkeypatch.setattr(registry, "_REVISIONS", {})


def _weights_downloaded(fake_hub) -> list[str]:
    return [p for p in fake_hub.downloads() if p.endswith(".safetensors")]


def test_hub_id_through_the_tab_handler_records_its_commit(fake_hub, hub_cache, cold_models):
    *_, last = tab.generate_text(*_args(HUB, "It is a truth", 6))
    text, _, info, details, _ = last
    record = details["record"]
    assert record["revision"] == fake_hub.repos[HUB].sha and len(record["revision"]) == 40
    assert record["model"] == HUB and record["model_hash"] == f"hub:{HUB}"
    assert len(_weights_downloaded(fake_hub)) == 4 and "Seed used:** 5" in info
    *_, local = tab.generate_text(*_args("gpt-austen", "It is a truth", 6))
    assert local[0] == text and "revision" not in local[3]["record"]  # same weights, same text


def test_hub_download_bars_reach_the_requests_progress(fake_hub, hub_cache, cold_models,
                                                       monkeypatch):
    """The registry downloads in a thread of its own; gradio's tqdm tracking follows a context
    variable, which the GPT loader carries into that thread."""
    import gradio as gr
    from gradio.context import LocalContext

    from playground.gpt import inference

    bars: set[str] = set()
    progress = gr.Progress(track_tqdm=True)
    monkeypatch.setattr(progress, "_progress_callback",
                        lambda: lambda tracked: bars.update(str(t.desc) for t in tracked))
    token = LocalContext.progress.set(progress)
    try:
        inference.load_language_model(HUB)
    finally:
        LocalContext.progress.reset(token)
    assert any("safetensors" in bar for bar in bars), bars
    wired = inspect.signature(tab.generate_text).parameters["progress"].default
    assert isinstance(wired, gr.Progress) and wired.track_tqdm  # gradio injects the tracker


def test_hub_id_over_the_api(client, fake_hub, hub_cache, cold_models):
    text, _, info, details = client.predict(model=HUB, prompt="It is a truth",
                                            api_name="/gpt_generate", max_new_tokens=6,
                                            **{k: v for k, v in HANDLER_ARGS.items()})
    assert details["record"]["revision"] == fake_hub.repos[HUB].sha
    assert text == details["text"] and len(_weights_downloaded(fake_hub)) == 4


def test_stopped_hub_gives_a_clear_message_fast_and_the_app_keeps_serving(
        client, fake_hub, hub_cache, cold_models, tiny_name):
    from gradio_client.exceptions import AppError

    fake_hub.stop()
    registry._reach_cache.clear()
    start = time.monotonic()
    with pytest.raises(AppError, match="cannot reach the hub.*Choose one of the bundled models"):
        client.predict(model=HUB, prompt="It is", api_name="/gpt_generate", max_new_tokens=4,
                       **HANDLER_ARGS)
    assert time.monotonic() - start < 10
    text, *_ = client.predict(model=tiny_name, prompt="the lady", api_name="/gpt_generate",
                              max_new_tokens=4, **HANDLER_ARGS)
    assert text
