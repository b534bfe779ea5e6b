"""UI helpers shared by the family tabs (the only core module that imports gradio).

Model code raises ``UserInputError``/``ModelLoadError``; ``friendly`` turns them into
``gr.Error`` so the browser and the API show a readable message and the server keeps serving.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import os
import tempfile
from pathlib import Path

import gradio as gr
from gradio import processing_utils
from gradio import utils as gr_utils
from gradio.blocks import Block
from gradio.state_holder import SessionState, StateHolder

from playground.core import registry, sessions, zerogpu
from playground.core.errors import ModelLoadError, UserInputError
from playground.core.seeding import MAX_SEED

# Generation shares one queue slot so 2 CPU cores or one GPU are never oversubscribed; training
# streams have their own group (the work runs in worker processes, ``core.live``), so a long run
# never holds the generation slot.
MODEL_CONCURRENCY_ID = "model"
TRAIN_CONCURRENCY_ID = "train"
TRAIN_STREAMS = 32  # training streams open at once (queued runs wait in core.live's pool)
log = logging.getLogger("playground")
zerogpu.USER_ERROR_TYPE = gr.Error  # on ZeroGPU, our messages cross the worker as gr.Error


def _write_once(path: Path, data: bytes) -> str:
    """Write a content-addressed cache file without ever rewriting one that may be served.

    Gradio names these files by the hash of their bytes, so an existing file already holds
    ``data``; rewriting it in place (``write_bytes`` truncates first) cut another user's
    download of the same picture mid-body under load. New files appear by an atomic rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.utime(path)  # the cache sweep ages files by time: a reused copy is fresh again
        return str(path.resolve())
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(staging, path)
    return str(path.resolve())


def _save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = processing_utils.encode_pil_to_bytes(img, format)
    return _write_once(Path(cache_dir) / processing_utils.hash_bytes(data) / f"{name}.{format}",
                       data)


def _save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    if not Path(file_name).suffix:
        file_name += processing_utils.detect_audio_format(data)
    return _write_once(Path(cache_dir) / processing_utils.hash_bytes(data) / Path(file_name).name,
                       data)


# Gradio 6.31 writes PIL/array outputs and bytes in place; its file copies are already atomic.
processing_utils.save_pil_to_cache = _save_pil_to_cache
processing_utils.save_bytes_to_cache = _save_bytes_to_cache

_gradio_set_session_item = SessionState.__setitem__


def _set_session_item(self: SessionState, key: int, value) -> None:
    """Keep a session's copy of a component under the component's own id.

    An output given ``gr.skip()``/``gr.update(...)`` gets a fresh component object in the
    session's state, with a fresh ``_id``; Gradio 6.31 then stores that object again under its
    new id the next time the output gets a value, together with a copy of its config and that
    value. Every streamed GPT generation (``gr.skip()`` for the details until the end) left
    two such entries, ~55 KB of JSON a generation, for as long as the session lived: under
    ``bench.load`` the server's live Python blocks grew by ~100,000 a minute, without end
    (research/memory.md). Giving the copy the id it stands for makes those writes land on
    the one entry."""
    block = self.blocks_config.blocks.get(key)
    if (isinstance(value, Block) and block is not None and not isinstance(block, gr.State)
            and value._id != key):
        value._id = key
    _gradio_set_session_item(self, key, value)


SessionState.__setitem__ = _set_session_item

_gradio_delete_expired_state = StateHolder.delete_all_expired_state


def _delete_expired_state(self: StateHolder) -> None:
    """Gradio's own sweep (every second), which also forgets closed sessions.

    Gradio 6.31 marks a session closed when its tab goes and deletes its ``gr.State`` values an
    hour later ("time to reopen the session"), but keeps the session's copy of the app's
    config (~1 MB for this app) and its last outputs until 10,000 sessions have come: every
    page load of a class, for days. A session closed and unused for that hour now goes too."""
    _gradio_delete_expired_state(self)
    now = datetime.datetime.now()
    for session_id, state in list(self.session_data.items()):
        last_used = self.time_last_used.get(session_id)
        if (state.is_closed and last_used is not None
                and (now - last_used).total_seconds() > state.STATE_TTL_WHEN_CLOSED):
            self.delete_state(session_id)  # runs the State components' delete callbacks
            with self.lock:
                self.session_data.pop(session_id, None)
                self.time_last_used.pop(session_id, None)


StateHolder.delete_all_expired_state = _delete_expired_state


def _to_gr_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (UserInputError, ModelLoadError)):
        return gr.Error(str(exc))
    if isinstance(exc, MemoryError):
        return gr.Error("Out of memory: try a smaller size or fewer samples.")
    log.exception("unexpected error in handler")
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {str(exc)[:200]}). "
                    "The server is still running; try other settings.")


def _split_request(fn, args: tuple) -> tuple[gr.Request | None, tuple]:
    """Gradio passes the request first (see ``friendly``); a direct call (tests) does not."""
    if args and (isinstance(args[0], gr.Request)
                 or (args[0] is None and len(args) == _positional_count(fn) + 1)):
        return args[0], args[1:]
    return None, args


def _positional_count(fn) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _with_request_signature(wrapper, fn):
    """Show gradio ``(request: gr.Request, *fn's parameters)`` so it injects the request."""
    signature = inspect.signature(fn)
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=gr.Request)
    wrapper.__signature__ = signature.replace(parameters=[request,
                                                          *signature.parameters.values()])
    # resolved hints (gr.SelectData, gr.Progress, ...) so gradio still injects its special args
    wrapper.__annotations__ = {**gr_utils.get_type_hints(fn), "request": gr.Request}
    return wrapper


def friendly(fn):
    """Decorate a tab handler (plain or generator): every failure reaches the user as gr.Error,
    and the handler runs as the requesting session (``core.sessions``), so the models and
    files it sees are everyone's plus that session's own."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            request, args = _split_request(fn, args)
            session = _session_of(request)
            with sessions.use_session(session):
                gen = fn(*args, **kwargs)
            try:
                while True:
                    with sessions.use_session(session):
                        try:
                            value = next(gen)
                        except StopIteration:
                            return
                        except Exception as exc:
                            raise _to_gr_error(exc) from exc
                    yield value
            finally:
                with sessions.use_session(session):
                    gen.close()  # a dropped connection stops the work behind the stream
        return _with_request_signature(gen_wrapper, fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        request, args = _split_request(fn, args)
        with sessions.use_session(_session_of(request)):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                raise _to_gr_error(exc) from exc
    return _with_request_signature(wrapper, fn)


def end_session(request: gr.Request) -> None:
    """``demo.unload`` handler: the tab closed, so the session's runs and models go now and its
    output files after ``OUTPUT_GRACE_S`` (a request still in flight keeps what it wrote)."""
    sessions.end_session(_session_of(request), keep_outputs_s=sessions.OUTPUT_GRACE_S)


def model_event(api_name: str | None, family: str | None = None, slots: int = 1) -> dict:
    """Keyword arguments for an event that runs a model: a named API route in its family's
    queue group (``family`` defaults to the route's prefix, ``gan`` for ``gan_sample``).

    Each family's model serves one request at a time (txt2img's step recorder and autoguidance
    hook its UNet, so two requests must not share it), while the families run side by side:
    a GAN sample never waits behind a 20-step diffusion. ``PLAYGROUND_GEN_SLOTS`` = 0 puts
    every family back into one shared slot. ``slots``: requests of the family that may run at
    once (the family must give each its own model copy: txt2img does).
    """
    family = family or (api_name.split("_")[0] if api_name else "")
    shared = os.environ.get("PLAYGROUND_GEN_SLOTS", "family") == "0" or not family
    group = MODEL_CONCURRENCY_ID if shared else f"{MODEL_CONCURRENCY_ID}-{family}"
    return {"api_name": api_name or None, "concurrency_id": group,
            "concurrency_limit": 1 if shared else slots,
            "api_visibility": "public" if api_name else "undocumented"}


def train_event(api_name: str) -> dict:
    """Keyword arguments for an event that streams a live training run (a documented route)."""
    return {"api_name": api_name, "concurrency_id": TRAIN_CONCURRENCY_ID,
            "concurrency_limit": TRAIN_STREAMS, "api_visibility": "public"}


def seed_controls(default: int = 0) -> tuple[gr.Number, gr.Checkbox]:
    """A seed box and a 'randomize' tick box; handlers report the seed they used."""
    with gr.Row():
        seed = gr.Number(value=default, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
        randomize = gr.Checkbox(value=False, label="Randomize seed")
    return seed, randomize


def model_dropdown(family: str, label: str = "Model", info: str | None = None) -> gr.Dropdown:
    """Registry names plus any typed hub id (``owner/name``); paths are refused by the loader."""
    names = registry.choices(family)
    return gr.Dropdown(choices=names, value=names[0] if names else None, label=label,
                       allow_custom_value=True,
                       info=info or "A bundled model, or a Hugging Face hub id (owner/name).")


@friendly
def stop_live_run(run_id: str | None) -> str:
    """Handler of every tab's Stop button: stop this session's live run kept in gr.State."""
    from playground.core import live

    return "Stopped: nothing was saved." if live.cancel_run(run_id) else "No run to stop."


def stream_live_run(run, progress, finished, stopped, every_s: float = 0.5):
    """The loop every live-training handler runs: yield ``progress(run)`` while it is queued or
    trains, then ``finished(run)`` once it has saved, or ``stopped(run)`` if it was cancelled
    (nothing saved). If the stream ends early (the user closed the tab, cancelled the request
    or lost the connection), the run is stopped: nobody is left training for no one.

    A training error is raised after the last progress update, so ``friendly`` reports it.
    """
    try:
        for r in run.poll(every_s):
            if not r.done.is_set():
                yield progress(r)
    finally:
        if not run.done.is_set():
            run.stop()
    if run.error is not None:
        raise run.error
    if run.result is None:
        yield stopped(run)
        return
    yield finished(run)
