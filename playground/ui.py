"""UI helpers shared by the family tabs (the only core module that imports gradio).

Model code raises ``UserInputError``/``ModelLoadError``; ``friendly`` turns them into
``gr.Error`` so the browser and the API show a readable message and the server keeps serving.
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from playground.core import registry
from playground.core.errors import ModelLoadError, UserInputError
from playground.core.seeding import MAX_SEED

# All model work shares one queue slot so 2 CPU cores or one GPU are never oversubscribed.
MODEL_CONCURRENCY_ID = "model"
MAX_UPLOAD_MB = 20
log = logging.getLogger("playground")


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


def friendly(fn):
    """Decorate a tab handler (plain or generator) so every failure reaches the user as gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _to_gr_error(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _to_gr_error(exc) from exc
    return wrapper


def model_event(api_name: str | None) -> dict:
    """Keyword arguments for an event that runs a model: named API route, shared queue slot."""
    return {"api_name": api_name or None, "concurrency_id": MODEL_CONCURRENCY_ID,
            "concurrency_limit": 1,
            "api_visibility": "public" if api_name else "undocumented"}


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


def check_upload_size(path: str | None, max_mb: float = MAX_UPLOAD_MB) -> None:
    import os
    if path and os.path.getsize(path) > max_mb * 1024 * 1024:
        raise UserInputError(f"The upload is too big ({os.path.getsize(path) / 2**20:.1f} MB); "
                             f"the limit is {max_mb} MB.")


def stop_live_run(run_id: str | None) -> str:
    """Handler of every tab's Stop button: cancel the live training run kept in gr.State."""
    from playground.core import live

    return "Stopping after the current step..." if live.cancel_run(run_id) else "No run to stop."


def stream_live_run(run, progress, finished, stopped, every_s: float = 0.5):
    """The loop every live-training handler runs: yield ``progress(run)`` while it trains, then
    ``finished(run)`` once it has saved, or ``stopped(run)`` if it was cancelled (nothing saved).

    A training error is raised after the last progress update, so ``friendly`` reports it.
    """
    for r in run.poll(every_s):
        if not r.done.is_set():
            yield progress(r)
    if run.error is not None:
        raise run.error
    result = run.result
    if result is None or getattr(result, "cancelled", False):
        yield stopped(run)
        return
    yield finished(run)
