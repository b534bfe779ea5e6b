"""Train on your own text (live.py): upload checks, a short live run that lands in the registry."""

from __future__ import annotations

import re

import pytest

from playground.core import registry
from playground.core.errors import UserInputError
from playground.gpt import live
from tests.test_gpt_support import tiny_text


def test_utf8_and_windows_1252_uploads_are_read(tmp_path):
    text = tiny_text(10) + " café — “naïve”"
    utf8 = tmp_path / "a.txt"
    utf8.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert live.read_upload(utf8) == text
    latin = tmp_path / "b.txt"
    latin.write_bytes(text.encode("cp1252"))
    assert live.read_upload(latin) == text


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 300, "binary"),
    (bytes(range(1, 32)) * 200, "does not look like text"),
    (b"too short", "too short"),
])
def test_bad_uploads_are_refused(tmp_path, content, message):
    path = tmp_path / "up.txt"
    path.write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        live.read_upload(path)


def test_oversized_upload_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * (live.MAX_UPLOAD_BYTES + 1))
    with pytest.raises(UserInputError, match="too big"):
        live.read_upload(path)


def test_missing_upload_and_bad_settings_are_refused():
    with pytest.raises(UserInputError, match="Upload"):
        live.read_upload(None)
    with pytest.raises(UserInputError, match="Training steps"):
        live.start_training(tiny_text(), "new", 10**6, 0)
    with pytest.raises(UserInputError, match="mode"):
        live.start_training(tiny_text(), "sideways", 20, 0)


def test_live_run_trains_and_registers_the_model(monkeypatch, tmp_path):
    run, name = live.start_training(tiny_text(), "new", 20, seed=0)
    for _ in run.poll(0.2):
        pass
    assert run.error is None, run.error
    assert run.result == name and run.history[-1]["step"] == 20
    losses = [row["loss"] for row in run.history]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    assert run.samples and isinstance(run.samples[0][1], str)
    assert name in registry.choices("gpt")
    assert (registry.resolve("gpt", name).path / "config.json").exists()


def test_live_run_can_be_cancelled(monkeypatch, tmp_path):
    from playground.core import live as core_live

    run, name = live.start_training(tiny_text(), "new", 3000, seed=0)
    while not run.history and not run.done.is_set():
        run.done.wait(0.1)
    assert core_live.cancel_run(run.run_id)
    run.done.wait(60)
    assert run.error is None and run.result is None and run.history[-1]["step"] < 3000
    assert name not in registry.choices("gpt")


def test_tab_handler_streams_the_run_and_offers_the_result(monkeypatch, tmp_path):
    """The tab's handler on playground.ui.stream_live_run: progress rows, then the dropdown."""
    from playground.gpt import tab

    upload = tmp_path / "up.txt"
    upload.write_text(tiny_text())
    outputs = list(tab.train_on_upload(str(upload), "new", 20, 3, False))
    first, last = outputs[0], outputs[-1]
    assert first[2].startswith("Training **my-gpt-") and "(seed 3)" in first[2]
    name = first[2].split("**")[1]
    assert re.fullmatch(rf"Done: \*\*{name}\*\* \(20 steps, \d+ s\)\. It is now in the model "
                        r"list above\.", last[2]) and last[3] is None
    assert last[4]["value"] == name and name in last[4]["choices"]
    assert set(last[0]["series"]) == {"train loss"} and len(last[0]) == 20  # a row per step


def test_a_queued_run_shows_what_it_waits_for(monkeypatch, tmp_path):
    """With the pool full (another session's run), the status line says why we wait; the
    stream's end (a closed tab) stops the queued run before it ever starts."""
    from playground.core import live as core_live
    from playground.core import sessions
    from playground.gpt import tab

    monkeypatch.setattr(core_live, "SLOTS", core_live._Slots(1))
    with sessions.use_session("s-gpt-busy"):
        busy = core_live.start_live_run("toyfam", "tests.toy_task:build_live_run",
                                        {"steps": 100000, "step_sleep_s": 0.01},
                                        label="toy-busy-{id}")
    upload = tmp_path / "up.txt"
    upload.write_text(tiny_text())
    try:
        stream = tab.train_on_upload(str(upload), "new", 20, 3, False)
        first = next(stream)
        name, run = first[2].split("**")[1], core_live._RUNS[first[3]]
        status = next(stream)[2]
        assert status.startswith("Queued: 1 training run(s) ahead of yours; this server trains "
                                 "1 run(s) at a time") and f"**{name}** starts" in status
        assert run.state == "queued"
        stream.close()
        assert run.done.wait(10) and run.state == "stopped" and run.result is None
    finally:
        busy.stop()
    assert busy.done.wait(10) and name not in registry.choices("gpt")
