"""Model registry and loader: a name maps to a folder in ``weights/`` or a hub id.

The UI offers registry names and hub ids of the form ``owner/name`` only; a filesystem path
typed by a user is refused. Every model, local or hub, is loaded through the same
``from_pretrained`` call by a family-supplied loader; loaded models are cached.
"""

from __future__ import annotations

import contextvars
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from playground.core.errors import ModelLoadError, UserInputError
from playground.core.sessions import current_session, on_session_end

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = REPO_ROOT / "weights"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
HUB_TIMEOUT_S = 8.0  # a hub load must fail well inside the 10 s the UI promises
REACH_CACHE_S = 5.0  # a hub that stopped answering is noticed within seconds
# Without a GPU, a hub repo larger than this is refused before anything is downloaded.
HUB_MAX_MB_CPU = float(os.environ.get("PLAYGROUND_HUB_MAX_MB_CPU", "3000"))


@dataclass
class ModelEntry:
    """One selectable model. ``path`` is a local folder; otherwise ``hub_id`` is used."""

    name: str
    family: str
    path: Path | None = None
    hub_id: str | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)
    owner: str | None = None  # the session that trained it; None = everyone's

    @property
    def key(self) -> tuple[str, str, str]:
        """Hashable identity, for caches keyed by model."""
        return (self.family, self.name, self.source)

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else str(self.hub_id)

    @property
    def is_local(self) -> bool:
        return self.path is not None


_REGISTRY: dict[str, dict[str, ModelEntry]] = {}
_LOCK = threading.RLock()


def register(entry: ModelEntry) -> ModelEntry:
    """Add or replace a model under its family (shipped, hub and session-trained models)."""
    with _LOCK:
        _REGISTRY.setdefault(entry.family, {})[entry.name] = entry
    return entry


def _visible(entry: ModelEntry) -> bool:
    """A session's own models are listed and usable only in that session."""
    return entry.owner is None or entry.owner == current_session()


def owned(session: str | None) -> list[ModelEntry]:
    """The models ``session`` trained (to hand them to a ZeroGPU worker process)."""
    with _LOCK:
        return [e for fam in _REGISTRY.values() for e in fam.values()
                if session and e.owner == session]


def drop_owned(session: str) -> list[ModelEntry]:
    """Forget every model ``session`` trained (its session ended); returns them."""
    with _LOCK:
        dropped = [e for fam in _REGISTRY.values() for e in fam.values() if e.owner == session]
        for entry in dropped:
            _REGISTRY[entry.family].pop(entry.name, None)
    return dropped


def publish(family: str, name: str, folder: Path) -> ModelEntry:
    """Make the current session's model ``name`` everyone's (a deliberate user action): its
    files move to ``folder`` (outside the session, which deletes its own on exit)."""
    entry = resolve(family, name)
    if entry.owner is None:
        raise UserInputError(f"'{name}' is already available to everyone.")
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(entry.path), str(folder))
    public = ModelEntry(entry.name, family, path=folder, description=entry.description,
                        extra=dict(entry.extra), owner=None)
    return register(public)


def register_weights(family: str, name: str, description: str = "",
                     **extra) -> ModelEntry:
    """Register ``weights/<name>`` as a local model of ``family``."""
    return register(ModelEntry(name, family, path=WEIGHTS_DIR / name, description=description,
                               extra=extra))


def register_hub(family: str, hub_id: str, description: str = "", **extra) -> ModelEntry:
    return register(ModelEntry(hub_id, family, hub_id=hub_id, description=description, extra=extra))


def choices(family: str, *, available_only: bool = False) -> list[str]:
    """Names to show in a dropdown, local models first."""
    with _LOCK:
        entries = [e for e in _REGISTRY.get(family, {}).values() if _visible(e)]
    if available_only:
        entries = [e for e in entries if not e.is_local or e.path.exists()]
    return [e.name for e in sorted(entries, key=lambda e: not e.is_local)]


def is_hub_id(name: str) -> bool:
    """True for ``owner/name`` with safe characters and no ``..`` component."""
    return bool(HUB_ID_RE.match(name)) and ".." not in name


def resolve(family: str, name) -> ModelEntry:
    """Map a user-supplied model name to an entry, refusing anything that looks like a path.

    Raises UserInputError for empty names, paths (``/tmp/x``, ``../../etc/passwd``, ``C:\\x``)
    and malformed ids.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserInputError("Choose a model.")
    name = name.strip()
    with _LOCK:
        entry = _REGISTRY.get(family, {}).get(name)
    if entry is not None and _visible(entry):
        return entry
    if name.startswith(("/", "\\", "~", ".")) or "\\" in name or ":" in name or not is_hub_id(name):
        known = ", ".join(choices(family)) or "none"
        raise UserInputError(
            f"Unknown model {name[:80]!r}. Use a listed model ({known}) or a Hugging Face hub id "
            "of the form 'owner/name'; file paths are not accepted.")
    if Path(name).exists():  # from_pretrained would read this server's folder, not the hub
        raise UserInputError(f"{name[:80]!r} names a folder on this server, not a hub model; "
                             "file paths are not accepted.")
    return ModelEntry(name, family, hub_id=name)


def hub_address() -> tuple[str, int]:
    """(host, port) of the hub endpoint, honouring ``HF_ENDPOINT`` (scheme, host and port), so a
    mirror or a test server at ``http://127.0.0.1:8123`` is probed where it really listens."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        try:
            from huggingface_hub import constants
            endpoint = constants.ENDPOINT
        except Exception:  # pragma: no cover - huggingface_hub is a hard dependency
            endpoint = "https://huggingface.co"
    url = urlparse(endpoint.rstrip("/"))
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or "", port


_reach_cache: dict[tuple[str, int], tuple[float, bool]] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the hub? Cached for ``REACH_CACHE_S`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    address = hub_address()
    cached = _reach_cache.get(address)
    if cached and time.monotonic() - cached[0] < REACH_CACHE_S:
        return cached[1]
    try:
        with socket.create_connection(address, timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _reach_cache[address] = (time.monotonic(), ok)
    return ok


def _in_hub_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir
        return any(r.repo_id == hub_id for r in scan_cache_dir().repos)
    except Exception:
        return False


def _offline_message(hub_id: str, detail: str) -> str:
    return (f"Could not load '{hub_id}' from the Hugging Face Hub: this machine is offline or "
            f"cannot reach the hub ({detail}), and the model is not in the local cache. "
            "Choose one of the bundled models, or run the app where the internet is available "
            "(e.g. on a Hugging Face Space).")


class _LRU:
    def __init__(self, size: int) -> None:
        self.size, self.items = size, OrderedDict()

    def get(self, key):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


_CACHE = _LRU(int(os.environ.get("PLAYGROUND_MODEL_CACHE", "10")))


def load_model(family: str, name: str | ModelEntry, loader: Callable[[str], object], *,
               key: str = "") -> object:
    """Resolve ``name`` (or take an entry already resolved for this request) and load it with
    ``loader(source)`` (a ``from_pretrained`` wrapper), cached.

    A hub id that cannot be reached fails within ``HUB_TIMEOUT_S`` with a ModelLoadError whose
    message names the offline cause; any other failure is a ModelLoadError too.
    """
    entry = name if isinstance(name, ModelEntry) else resolve(family, name)
    cache_key = (family, entry.source, key)
    with _LOCK:
        cached = _CACHE.get(cache_key)
    if cached is not None:
        return cached
    if entry.is_local and not entry.path.exists():
        raise ModelLoadError(f"Model '{entry.name}' is not installed: {entry.path.name} is missing "
                             "from weights/. Train it with `python -m playground.train`.")
    if not entry.is_local:
        _check_hub_repo(entry)
    model = _load_with_timeout(entry, loader)
    with _LOCK:
        _CACHE.put(cache_key, model)
    return model


_REVISIONS: dict[str, str] = {}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5",
                   ".gguf")
_VARIANT = re.compile(r"\.(fp16|bf16|non_ema|ema_only)\.|(^|/)(onnx|flax|openvino)/")


def download_estimate_mb(files: list[tuple[str, int]]) -> float:
    """MB that ``from_pretrained`` fetches from a repo listing ``(path, size)``: the main
    weights only (safetensors where they exist; no fp16/non-EMA variants, no ONNX/Flax copies;
    for a diffusers pipeline, only its component folders), plus the small files."""
    names = {name for name, _ in files}
    weights = [(n, b) for n, b in files if n.endswith(WEIGHT_SUFFIXES) and not _VARIANT.search(n)]
    if any(n.endswith(".safetensors") for n, _ in weights):
        weights = [(n, b) for n, b in weights if n.endswith(".safetensors")]
    if "model_index.json" in names:  # a pipeline: single-file checkpoints at the root unused
        weights = [(n, b) for n, b in weights if "/" in n]
    small = sum(b for n, b in files if not n.endswith(WEIGHT_SUFFIXES) and b < 50 * 2**20)
    return (sum(b for _, b in weights) + small) / 2**20


def revision(entry: ModelEntry) -> str | None:
    """The commit sha a hub model was loaded at (for its records); None for local folders."""
    return None if entry.is_local else _REVISIONS.get(str(entry.hub_id))


def _cached_revision(hub_id: str) -> str | None:
    try:
        from huggingface_hub import scan_cache_dir
        for repo in scan_cache_dir().repos:
            if repo.repo_id == hub_id and repo.revisions:
                return max(repo.revisions, key=lambda r: r.last_modified).commit_hash
    except Exception:
        return None
    return None


def _check_hub_repo(entry: ModelEntry) -> None:
    """Before downloading: is the hub there, which commit is it, and does it fit this machine?

    Records the commit sha (``revision``); refuses, with a clear message, a repo larger than
    ``HUB_MAX_MB_CPU`` where there is no GPU, and an unreachable hub unless the model is in the
    local cache.
    """
    hub_id = str(entry.hub_id)
    if not hub_reachable():
        if _in_hub_cache(hub_id):
            _REVISIONS[hub_id] = _cached_revision(hub_id) or "cached"
            return
        raise ModelLoadError(_offline_message(hub_id, "no network connection"))
    try:
        from huggingface_hub import HfApi
        info = HfApi().model_info(hub_id, files_metadata=True, timeout=HUB_TIMEOUT_S)
    except Exception as exc:
        name = type(exc).__name__
        if "NotFound" in name:
            raise ModelLoadError(f"'{hub_id}' was not found on the Hugging Face Hub (check the "
                                 "spelling, or whether the repository is private).") from exc
        if _in_hub_cache(hub_id):
            _REVISIONS[hub_id] = _cached_revision(hub_id) or "cached"
            return
        raise ModelLoadError(_offline_message(hub_id, f"{name}: {str(exc)[:120]}")) from exc
    _REVISIONS[hub_id] = info.sha or "unknown"
    size_mb = download_estimate_mb([(s.rfilename, s.size or 0) for s in info.siblings or []])
    from playground.core.device import get_device
    if get_device().type == "cpu" and size_mb > HUB_MAX_MB_CPU:
        raise ModelLoadError(
            f"'{hub_id}' is {size_mb:,.0f} MB; without a GPU this app loads hub models up to "
            f"{HUB_MAX_MB_CPU:,.0f} MB (PLAYGROUND_HUB_MAX_MB_CPU). Choose a smaller model or "
            "run on a GPU.")


def _load_with_timeout(entry: ModelEntry, loader: Callable[[str], object]) -> object:
    if entry.is_local:
        try:
            return loader(entry.source)
        except Exception as exc:
            raise ModelLoadError(f"Could not load model '{entry.name}': {exc}") from exc
    result: dict = {}

    def target() -> None:
        try:
            result["model"] = loader(entry.source)
        except Exception as exc:  # reported below
            result["error"] = exc

    # hub downloads can be slow on a Space; only the offline check above is bounded tightly.
    # The thread runs in a copy of the caller's context, so a tab's gr.Progress(track_tqdm=True)
    # (a context variable) sees huggingface_hub's download bars.
    context = contextvars.copy_context()
    thread = threading.Thread(target=lambda: context.run(target), daemon=True)
    thread.start()
    thread.join(float(os.environ.get("PLAYGROUND_HUB_LOAD_TIMEOUT", "1800")))
    if "model" in result:
        return result["model"]
    exc = result.get("error")
    text = f"{type(exc).__name__}: {exc}" if exc else "timed out"
    if exc is not None and any(w in str(exc).lower() for w in ("offline", "connect", "resolve",
                                                              "cached", "network")):
        raise ModelLoadError(_offline_message(entry.hub_id, text.splitlines()[0][:200]))
    raise ModelLoadError(f"Could not load '{entry.hub_id}' from the hub: {text[:300]}")


def _forget_session(session: str) -> None:
    dropped = drop_owned(session)
    with _LOCK:
        for key in [k for k in _CACHE.items if any(k[1] == e.source for e in dropped)]:
            _CACHE.items.pop(key, None)


on_session_end(_forget_session)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.items.clear()
