"""pytest fixtures that point huggingface_hub (and diffusers/transformers through it) at a
:class:`tests.fake_hub.FakeHub` serving ``weights/`` folders as ``test/...`` repos.

Use in a test module (``pytest_plugins`` in a test module registers the fixtures; importing
the fixture names instead works too but ruff flags each use as F811)::

    pytest_plugins = ["tests.hub_fixtures"]

    def test_x(fake_hub, hub_cache):
        DiffusionPipeline.from_pretrained("test/txt2img-shapes")  # served by fake_hub
        assert fake_hub.downloads()                               # a cold cache downloaded

Why patching the environment is not enough: ``huggingface_hub.constants`` reads ``HF_ENDPOINT``,
``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, at import, into ``ENDPOINT``,
``HUGGINGFACE_CO_URL_TEMPLATE`` (used by ``hf_hub_url``), ``HF_HUB_CACHE``...; the module-level
``huggingface_hub.hf_api.api = HfApi()`` (behind ``model_info``, ``list_repo_tree``...) copied
``ENDPOINT`` into ``api.endpoint`` at import too. :func:`hub_environment` sets the environment
variables (for anything imported later, and for the app's ``registry.hub_reachable`` which reads
``HF_ENDPOINT``) *and* these module attributes, and restores all of them on exit. Cache paths are
read at call time from ``constants.HF_HUB_CACHE``, so a test can swap caches freely.

Recipes (each shown in tests/test_fake_hub.py):
- progress: ``fake_hub.delay_per_chunk = 0.05`` slows bodies, but huggingface_hub reports a
  file's progress per ``constants.DOWNLOAD_CHUNK_SIZE`` (10 MiB) read, i.e. once for each of
  our files; patch that constant to 64 KiB to see progress within a file.
- dead server: ``fake_hub.stop()`` (the fixture restarts it on the same port afterwards);
  ``playground.core.registry`` remembers "reachable" for 60 s: clear its ``_reach_cache``.
- stalled server: ``fake_hub.hang = True``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fake_hub import HUB_REPOS, FakeHub

# copies of the endpoint other libraries took at import (only used in their error messages)
_ENDPOINT_COPIES = [("diffusers.utils.constants", "HUGGINGFACE_CO_RESOLVE_ENDPOINT"),
                    ("diffusers.utils", "HUGGINGFACE_CO_RESOLVE_ENDPOINT"),
                    ("diffusers.utils.hub_utils", "HUGGINGFACE_CO_RESOLVE_ENDPOINT"),
                    ("diffusers.configuration_utils", "HUGGINGFACE_CO_RESOLVE_ENDPOINT")]


def set_hub_cache(mp: pytest.MonkeyPatch, cache: Path) -> None:
    """Point ``HF_HOME`` at ``cache`` and the hub cache at ``cache/hub``: the environment, and
    every ``huggingface_hub.constants`` path derived from ``HF_HOME`` at import (hub, assets and
    xet caches, token files, the agent-harness registry file), so nothing lands in ``~``."""
    from huggingface_hub import constants

    old_home = constants.HF_HOME
    for name, value in list(vars(constants).items()):
        if name.isupper() and isinstance(value, str) and value.startswith(old_home + os.sep):
            mp.setattr(constants, name, str(cache) + value[len(old_home):])
    hub_cache = cache / "hub"
    hub_cache.mkdir(parents=True, exist_ok=True)
    mp.setenv("HF_HOME", str(cache))
    mp.setenv("HF_HUB_CACHE", str(hub_cache))
    mp.setattr(constants, "HF_HOME", str(cache))
    mp.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    mp.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(hub_cache))


@contextmanager
def hub_environment(endpoint: str, cache: Path, *, timeout_s: int | None = None
                    ) -> Iterator[pytest.MonkeyPatch]:
    """Within the block huggingface_hub talks to ``endpoint`` and caches under ``cache``.

    Args:
        endpoint: e.g. ``http://127.0.0.1:41234`` (a FakeHub's ``endpoint``).
        cache: folder for ``HF_HOME``; the hub cache is ``cache/hub``.
        timeout_s: if given, ``HF_HUB_ETAG_TIMEOUT``/``HF_HUB_DOWNLOAD_TIMEOUT`` (seconds a HEAD
            or a download read may wait; the library default is 10).

    Yields the MonkeyPatch, so a caller can patch more and have it undone with the rest.
    """
    from huggingface_hub import constants, hf_api

    endpoint = endpoint.rstrip("/")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", endpoint)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.delenv("TRANSFORMERS_OFFLINE", raising=False)
        mp.setattr(constants, "ENDPOINT", endpoint)
        mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                   endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(hf_api.api, "endpoint", endpoint)
        for module, name in _ENDPOINT_COPIES:
            if hasattr(sys.modules.get(module), name):
                mp.setattr(sys.modules[module], name, endpoint)
        if timeout_s is not None:
            for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
                mp.setenv(name, str(timeout_s))
                mp.setattr(constants, name, timeout_s)
        set_hub_cache(mp, cache)
        yield mp


def _forget_reachability(endpoint: str) -> None:
    """Drop the app's remembered reachability of ``endpoint`` (kept 60 s), if the app is loaded:
    a test that stopped the server must not make the next one see it as offline."""
    registry = sys.modules.get("playground.core.registry")
    if registry is not None:
        url = urlsplit(endpoint)
        registry._reach_cache.pop((url.hostname, url.port), None)


@pytest.fixture(scope="session")
def fake_hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeHub, Path]]:
    """The FakeHub serving :data:`HUB_REPOS`, started once per session, and a session cache
    folder (``HF_HOME``) that stays warm across tests. Sets no environment: use ``fake_hub``."""
    hub = FakeHub(HUB_REPOS)
    hub.start()
    yield hub, tmp_path_factory.mktemp("hf-home")
    hub.stop()


@pytest.fixture
def fake_hub(fake_hub_server: tuple[FakeHub, Path]) -> Iterator[FakeHub]:
    """The session's FakeHub with huggingface_hub pointed at it for this test
    (:func:`hub_environment`: ``HF_ENDPOINT``, the import-time constants, ``HF_HOME`` = the
    session cache, warm after the first download). The request log is cleared and
    delay/hang reset before the test; after it the environment is restored (other tests see
    the real hub again) and a server the test stopped is started again on the same port.
    ``fake_hub.endpoint`` is the URL."""
    hub, cache = fake_hub_server
    hub.reset_counts()
    hub.delay_per_chunk, hub.hang = 0.0, False
    _forget_reachability(hub.endpoint)
    with hub_environment(hub.endpoint, cache):
        yield hub
    hub.delay_per_chunk, hub.hang = 0.0, False
    hub.start()  # no-op unless the test stopped it
    _forget_reachability(hub.endpoint)


@pytest.fixture
def fake_hub_endpoint(fake_hub: FakeHub) -> str:
    """Just the endpoint URL of :func:`fake_hub` (the environment is set the same way)."""
    return fake_hub.endpoint


@pytest.fixture
def hub_cache(fake_hub: FakeHub, tmp_path: Path) -> Iterator[Path]:
    """A cold hub cache for this test only: ``HF_HOME`` = ``tmp_path/hf-home``; yields the hub
    cache folder ``tmp_path/hf-home/hub``."""
    with pytest.MonkeyPatch.context() as mp:
        set_hub_cache(mp, tmp_path / "hf-home")
        yield tmp_path / "hf-home" / "hub"
