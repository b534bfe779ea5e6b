"""ZeroGPU, the free GPU hardware of Hugging Face Spaces, behind one decorator.

On ZeroGPU a GPU exists only inside a function decorated with ``spaces.GPU``; the call asks for
a time slot (``duration`` seconds, checked against the visitor's quota; shorter slots queue
first). ``gpu_handler(duration)`` applies ``spaces.GPU(duration=...)`` there and is a plain call
everywhere else (the ``spaces`` package is not even imported). ``duration`` may be a number or a
function of the handler's own arguments (``spaces`` calls it with the same arguments), so a
request for 50 steps asks for more time than one for 4.

Every wrapped handler is recorded in ``HANDLERS`` with its duration function, so a test can
check that each model route is wrapped and asks for a sane slot.

``spaces`` runs the task in a worker process forked once and reused; the request's session and
the models that session trained are not there. The task therefore takes them along: it enters
the caller's session and registers the caller's own models before calling the handler. A
``UserInputError``/``ModelLoadError`` raised there becomes a ``gr.Error`` inside the worker, or
``spaces`` would replace its message with "ZeroGPU worker error".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from playground.core.device import on_zerogpu

MIN_DURATION_S = 5
MAX_DURATION_S = 120  # ZeroGPU's slot for visitors without a PRO account


@dataclass(frozen=True)
class GpuHandler:
    name: str
    duration: Callable[..., float]  # seconds for the given arguments (clamped)


HANDLERS: dict[str, GpuHandler] = {}


def clamp(seconds: float) -> int:
    return int(min(MAX_DURATION_S, max(MIN_DURATION_S, round(seconds))))


def gpu_handler(duration: float | Callable[..., float]):
    """Decorate a handler that runs a model: ``spaces.GPU(duration=...)`` on ZeroGPU, else as is.

    ``duration``: seconds, or a function of the handler's arguments returning seconds; the
    result is clamped to [MIN_DURATION_S, MAX_DURATION_S].
    """
    def estimate(*args, **kwargs) -> int:
        try:
            value = duration(*args, **kwargs) if callable(duration) else duration
            return clamp(float(value))
        except Exception:  # a bad argument: the handler itself will report it
            return clamp(60)

    def decorate(fn):
        HANDLERS[f"{fn.__module__}.{fn.__qualname__}"] = GpuHandler(fn.__qualname__, estimate)
        if not on_zerogpu():
            return fn
        return _on_zerogpu(fn, estimate)
    return decorate


def _on_zerogpu(fn, estimate):
    """``fn`` as a ``spaces.GPU`` task that carries the caller's session and models along."""
    import functools
    import inspect

    import spaces  # only on ZeroGPU: it patches torch there

    from playground.core import registry, sessions

    def slot(session, own, *args, **kwargs) -> int:
        return estimate(*args, **kwargs)

    def enter(session, own):
        for entry in own:
            registry.register(entry)
        return sessions.use_session(session)

    if inspect.isgeneratorfunction(fn):
        def task(session, own, *args, **kwargs):
            with enter(session, own), _user_errors():
                yield from fn(*args, **kwargs)
    else:
        def task(session, own, *args, **kwargs):
            with enter(session, own), _user_errors():
                return fn(*args, **kwargs)
    gpu_task = spaces.GPU(duration=slot)(task)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            session = sessions.current_session()
            yield from gpu_task(session, registry.owned(session), *args, **kwargs)
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            session = sessions.current_session()
            return gpu_task(session, registry.owned(session), *args, **kwargs)
    return call


# How our readable errors leave the worker: set by the gradio layer (playground/ui.py) to
# gr.Error, the one exception whose message ``spaces`` passes on (core never imports gradio).
USER_ERROR_TYPE: type[Exception] | None = None


class _user_errors:
    """Inside the ZeroGPU worker: our readable errors leave as ``USER_ERROR_TYPE``."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from playground.core.errors import ModelLoadError, UserInputError

        if USER_ERROR_TYPE is not None and isinstance(exc, (UserInputError, ModelLoadError)):
            raise USER_ERROR_TYPE(str(exc)) from exc
        return False


def as_number(value, default: float) -> float:
    """A user's numeric input for a duration estimate, or ``default`` if it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
