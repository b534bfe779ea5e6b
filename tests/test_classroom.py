"""A class on one link: each session sees only its own trained models and files, training runs
in worker processes that stop at once when asked or abandoned, uploads are checked before they
are decoded, and ZeroGPU wrappers ask for sane slots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.core import live, registry, sessions, uploads
from playground.core.errors import UserInputError

TOY = "tests.toy_task:build_live_run"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_session_sees_only_its_own_models(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with sessions.use_session("alice"):
        registry.register(registry.ModelEntry("alice-model", "toyfam", path=folder,
                                              owner="alice"))
        assert "alice-model" in registry.choices("toyfam")
        assert registry.resolve("toyfam", "alice-model").path == folder
    with sessions.use_session("bob"):
        assert "alice-model" not in registry.choices("toyfam")
        with pytest.raises(UserInputError, match="Unknown model"):
            registry.resolve("toyfam", "alice-model")
    assert "alice-model" not in registry.choices("toyfam")  # nor outside any session
    sessions.end_session("alice")
    with sessions.use_session("alice"):
        assert "alice-model" not in registry.choices("toyfam")


def test_live_run_trains_in_a_worker_and_registers_for_its_session_only():
    with sessions.use_session("s-train"):
        run = live.start_live_run("toyfam", TOY, {"steps": 12}, label="toy-{id}")
    assert run.done.wait(120) and run.error is None, run.error
    assert run.state == "done" and run.result == run.label and run.label.startswith("toy-")
    assert [r["step"] for r in run.history] == list(range(1, 13))
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    assert run.samples and tuple(run.samples[-1][1].shape) == (1, 2)  # tensors cross the pipe
    folder = Path(run.summary["out_dir"])
    assert folder.is_dir() and folder.is_relative_to(sessions.RUNS_ROOT / "sessions" / "s-train")
    with sessions.use_session("s-train"):
        assert run.label in registry.choices("toyfam")
    with sessions.use_session("someone-else"):
        assert run.label not in registry.choices("toyfam")
        assert not live.cancel_run(run.run_id)  # nor can they stop another session's run
    sessions.end_session("s-train")
    assert not folder.exists()


def test_stopping_kills_the_worker_at_once_and_saves_nothing():
    with sessions.use_session("s-stop"):
        run = live.start_live_run("toyfam", TOY, {"steps": 100000, "step_sleep_s": 0.01},
                                  label="toy-stop-{id}")
    deadline = time.monotonic() + 60
    while not run.history and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.history and run.pid and _alive(run.pid)
    t0 = time.monotonic()
    with sessions.use_session("s-stop"):
        assert live.cancel_run(run.run_id)
    assert run.done.wait(10)
    assert time.monotonic() - t0 < 2.0, "a stopped run must end within 2 s"
    assert not _alive(run.pid) and run.result is None and run.state == "stopped"
    assert not run.out_dir.exists()  # nothing saved


def test_an_abandoned_stream_stops_its_run():
    """Closing the tab or dropping the connection closes the handler's generator."""
    from playground.ui import stream_live_run

    with sessions.use_session("s-drop"):
        run = live.start_live_run("toyfam", TOY, {"steps": 100000, "step_sleep_s": 0.01},
                                  label="toy-drop-{id}")
    stream = stream_live_run(run, lambda r: "training", lambda r: "done", lambda r: "stopped",
                             every_s=0.05)
    assert next(stream) == "training"
    while not run.history:
        time.sleep(0.05)
    busy = _cpu_seconds(run.pid)
    assert busy >= 0
    stream.close()  # what Gradio does when the client goes away
    assert run.done.wait(10) and run.state == "stopped" and not _alive(run.pid)


def test_session_end_stops_its_runs_and_deletes_its_files():
    with sessions.use_session("s-end"):
        run = live.start_live_run("toyfam", TOY, {"steps": 100000, "step_sleep_s": 0.01},
                                  label="toy-end-{id}")
        out = sessions.unique_output("toyfam", "picture", ".png")
    out.write_bytes(b"x")
    while not run.history:
        time.sleep(0.05)
    sessions.end_session("s-end")
    assert run.done.is_set() and run.state == "stopped" and not _alive(run.pid)
    assert not out.exists()


def test_runs_queue_for_a_bounded_pool_and_know_their_place(monkeypatch):
    monkeypatch.setattr(live, "SLOTS", live._Slots(1))
    with sessions.use_session("s-q1"):
        first = live.start_live_run("toyfam", TOY, {"steps": 100000, "step_sleep_s": 0.01},
                                    label="toy-q1-{id}")
    with sessions.use_session("s-q2"):
        second = live.start_live_run("toyfam", TOY, {"steps": 5}, label="toy-q2-{id}")
    time.sleep(0.5)
    assert second.state == "queued" and second.queue_position == 1
    assert "1 training run(s) ahead" in second.waiting_note()
    first.stop()
    assert second.done.wait(120) and second.result and second.waiting_note() == ""


def test_worker_errors_reach_the_user_as_their_own_message():
    with sessions.use_session("s-err"):
        run = live.start_live_run("toyfam", TOY, {"steps": 50, "fail_at": 3}, label="t-{id}")
    assert run.done.wait(120)
    assert isinstance(run.error, UserInputError) and "toy failure at step 3" in str(run.error)
    assert run.result is None


def test_time_budget_ends_the_run_and_keeps_it(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAIN_BUDGET_S", "1.5")
    with sessions.use_session("s-budget"):
        run = live.start_live_run("toyfam", TOY, {"steps": 100000, "step_sleep_s": 0.01},
                                  label="toy-budget-{id}")
    assert run.done.wait(120) and run.error is None, run.error
    assert run.summary["stopped_by_budget"] and run.result  # saved and registered
    assert 10 < run.summary["steps"] < 100000


def test_step_caps_apply_on_a_shared_deployment(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_SHARED", "1")
    assert live.step_cap(20000, 3000) == 3000 and live.run_budget_s() == 300
    monkeypatch.setenv("PLAYGROUND_SHARED", "0")
    assert live.step_cap(20000, 3000) == 20000 and live.run_budget_s() == 0
    monkeypatch.delenv("PLAYGROUND_SHARED")
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    assert live.shared_deployment()


def test_output_names_are_unique_and_per_session():
    with sessions.use_session("s-out-a"):
        a1 = sessions.unique_output("gan", "seed-0", ".png")
        a2 = sessions.unique_output("gan", "seed-0", ".png")
    with sessions.use_session("s-out-b"):
        b1 = sessions.unique_output("gan", "seed-0", ".png")
    assert len({a1, a2, b1}) == 3 and a1.parent == a2.parent != b1.parent


def test_a_cached_picture_is_never_rewritten_while_served(tmp_path):
    """Two users with the same seed get the same picture: Gradio's content-hash cache file is
    written once (atomically) and reused, so a download in flight is never cut by a rewrite."""
    import threading

    from gradio import processing_utils

    import playground.ui  # noqa: F401  -- installs the write-once cache writers

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8))
    first = Path(processing_utils.save_pil_to_cache(img, str(tmp_path), format="png"))
    inode, size = first.stat().st_ino, first.stat().st_size
    short_reads, done = [], threading.Event()

    def read_loop():
        while not done.is_set():
            if len(first.read_bytes()) != size:
                short_reads.append(1)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for _ in range(50):
        again = Path(processing_utils.save_pil_to_cache(img, str(tmp_path), format="png"))
    done.set()
    reader.join()
    assert again == first and first.stat().st_ino == inode
    assert short_reads == []
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging file left


def test_sweep_deletes_old_outputs_and_idle_sessions(monkeypatch):
    with sessions.use_session("s-idle"):
        old = sessions.unique_output("vae", "old", ".gif")
        new = sessions.unique_output("vae", "new", ".gif")
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    past = time.time() - sessions.OUTPUT_MAX_AGE_S - 10
    os.utime(old, (past, past))
    removed = sessions.sweep()
    assert not old.exists() and new.exists() and removed["files"] >= 1
    removed = sessions.sweep(now=time.monotonic() + sessions.SESSION_IDLE_S + 1)
    assert removed["sessions"] >= 1 and not new.exists()


def test_an_unload_keeps_the_outputs_of_a_request_in_flight_until_the_grace_ends():
    """Gradio's unload fires when a heartbeat drops, also for a client still waiting on a
    result (gradio_client's heartbeat ends on a 20 s read timeout under load): the file its
    request just wrote must still be there when Gradio copies it out. Runs go at once; the
    output folder goes after the grace, unless the session came back."""
    import gradio as gr

    from playground import ui

    with sessions.use_session("s-flight"):
        png = sessions.unique_output("vae", "grid", ".png")
    png.write_bytes(b"x")
    run_dir = sessions.session_runs_dir("s-flight")
    run_dir.mkdir(parents=True)
    request = gr.Request(session_hash="s-flight")
    ui.end_session(request)  # the unload handler
    assert png.exists() and not run_dir.exists()
    now = time.monotonic()
    assert sessions.sweep(now=now)["ended_outputs"] == 0 and png.exists()
    assert sessions.sweep(now=now + sessions.OUTPUT_GRACE_S + 1)["ended_outputs"] == 1
    assert not png.exists()
    # a session that comes back within the grace keeps its folder
    with sessions.use_session("s-back"):
        again = sessions.unique_output("vae", "grid", ".png")
    again.write_bytes(b"y")
    ui.end_session(gr.Request(session_hash="s-back"))
    with sessions.use_session("s-back"):  # its next request
        pass
    assert sessions.sweep(now=time.monotonic() + sessions.OUTPUT_GRACE_S + 1)["ended_outputs"] == 0
    assert again.exists()
    sessions.end_session("s-back")
    assert not again.exists()


# ---- uploads ---------------------------------------------------------------------------

def _png(path: Path, size: tuple[int, int]) -> Path:
    Image.new("L", size, 255).save(path)
    return path


def test_a_pixel_bomb_is_refused_before_decoding(tmp_path):
    bomb = _png(tmp_path / "bomb.png", (13000, 13000))
    assert bomb.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    with pytest.raises(UserInputError, match=r"13000×13000 = 169\.0 megapixels; the limit is 16"):
        uploads.open_image(bomb)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"hello, not an image"), "is not an image this app can read"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(_png_bytes()[:60]), "could not|damaged|not an image"),
])
def test_bad_files_get_messages_that_say_what_is_wrong(tmp_path, make, message):
    path = tmp_path / "upload.png"
    make(path)
    with pytest.raises(UserInputError, match=message):
        uploads.load_image(path)


def _png_bytes() -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        buf, "PNG")
    return buf.getvalue()


def test_a_good_image_opens(tmp_path):
    image = uploads.load_image(_png(tmp_path / "ok.png", (40, 30)), min_side=16)
    assert image.size == (40, 30)
    with pytest.raises(UserInputError, match="at least 64×64"):
        uploads.open_image(tmp_path / "ok.png", min_side=64)


# ---- ZeroGPU ---------------------------------------------------------------------------

def test_spaces_gpu_is_a_plain_call_off_zerogpu(monkeypatch):
    import spaces

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def f(x):
        return x + 1

    assert spaces.GPU(duration=10)(f) is f


def test_gpu_handler_records_a_clamped_duration():
    from playground.core import zerogpu

    @zerogpu.gpu_handler(lambda steps, n: 0.5 * steps * n)
    def toy_handler(steps, n):
        return steps * n

    assert toy_handler(4, 2) == 8  # off ZeroGPU: the plain function
    handler = zerogpu.HANDLERS[f"{__name__}.test_gpu_handler_records_a_clamped_duration."
                               "<locals>.toy_handler"]
    assert handler.duration(4, 2) == zerogpu.MIN_DURATION_S
    assert handler.duration(40, 2) == 40
    assert handler.duration(1000, 4) == zerogpu.MAX_DURATION_S
    assert handler.duration("bad", 1) == 60  # a bad argument: the default slot


class _FakeSpaces:
    """Stands in for ``spaces`` on ZeroGPU: runs each task in another thread with a fresh
    context (as the real one runs it in a worker process), after asking for its duration."""

    def __init__(self):
        self.durations = []

    def GPU(self, duration):  # noqa: N802 (the real package's name)
        def decorate(task):
            import inspect
            import threading

            def run(*args, **kwargs):
                self.durations.append(duration(*args, **kwargs))
                box = {}

                def target():
                    try:
                        value = task(*args, **kwargs)
                        box["value"] = list(value) if inspect.isgenerator(value) else value
                    except BaseException as exc:
                        box["error"] = exc
                thread = threading.Thread(target=target)
                thread.start()
                thread.join()
                if "error" in box:
                    raise box["error"]
                return box["value"]

            if inspect.isgeneratorfunction(task):
                def gen(*args, **kwargs):
                    yield from run(*args, **kwargs)
                return gen
            return run
        return decorate


def test_on_zerogpu_the_task_carries_the_session_its_models_and_readable_errors(monkeypatch,
                                                                                tmp_path):
    import sys

    import gradio as gr

    import playground.ui  # noqa: F401  -- the gradio layer sets zerogpu.USER_ERROR_TYPE
    from playground.core import zerogpu

    fake = _FakeSpaces()
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", fake)

    @zerogpu.gpu_handler(lambda name, n=1: 10 * n)
    def handler(name, n=1):
        if name == "bad":
            raise UserInputError("Choose a model.")
        return sessions.current_session(), registry.resolve("zerofam", name).name, n

    @zerogpu.gpu_handler(lambda name: 7)
    def streaming(name):
        yield sessions.current_session()
        yield registry.resolve("zerofam", name).name

    entry = registry.ModelEntry("carol-model", "zerofam", path=tmp_path, owner="carol")
    registry.register(entry)
    with sessions.use_session("carol"):
        assert handler("carol-model", n=3) == ("carol", "carol-model", 3)
        assert list(streaming("carol-model")) == ["carol", "carol-model"]
        with pytest.raises(gr.Error, match="Choose a model"):
            handler("bad")
    assert fake.durations[:2] == [30, 7]
    with sessions.use_session("dave"), pytest.raises(gr.Error, match="Unknown model"):
        handler("carol-model")  # another session's model stays out of reach in the worker
    sessions.end_session("carol")
