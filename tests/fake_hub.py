"""A small local server speaking the parts of the Hugging Face Hub HTTP API that
``huggingface_hub`` (and through it diffusers and transformers) uses, serving local folders as
model repos, so hub ids can be tested with no internet.

Routes (as read in huggingface_hub 2.4's ``hf_api.py``, ``file_download.py``, ``utils/_http.py``):

- ``GET /api/models/{repo_id}`` and ``/api/models/{repo_id}/revision/{revision}``: ``model_info``
  / ``repo_info`` JSON (``id``, ``sha``, ``siblings``, ``private``, ``lastModified`` ...);
  ``?blobs=true`` adds ``size``/``blobId``/``lfs`` to each sibling.
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=...``: ``list_repo_tree``
  entries (``type``, ``path``, ``size``, ``oid``, ``lfs``); one page, no ``Link`` header.
- ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: ``X-Repo-Commit``, ``ETag`` (git
  blob sha1, or sha256 for LFS-like binaries with ``X-Linked-Etag``/``X-Linked-Size`` as the
  hub sends them), ``Content-Length``, ``Range: bytes=a-[b]`` → 206 (used to resume downloads).
- ``GET /api/agent-harnesses``: an empty registry (huggingface_hub 2.4 fetches it once a day).
- Errors: 404 with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``
  and ``X-Error-Message`` (``hf_raise_for_status`` maps them to the library's exceptions).

A revision is ``main`` or the repo's commit sha: 40 hex derived from its files' hashes, so it is
stable while the folder does not change. Every request is recorded (``hub.requests``,
``hub.bytes_served``); ``delay_per_chunk`` slows file bodies down to show progress; ``stop()``
closes the listening socket *and* live keep-alive connections (a dead server); ``hang = True``
makes it accept connections but never answer (a stalled server, bounded by client timeouts).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# Files the hub would store in LFS/Xet (as our .gitattributes routes them): the hub's ETag for
# those is the sha256 of the content, for the rest the git blob sha1.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".npz", ".npy",
                ".png", ".jpg", ".jpeg", ".gif", ".webp", ".mat", ".tar", ".zip", ".gz")
CHUNK_SIZE = 64 * 1024
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

# The repos the test fixtures serve (tests/hub_fixtures.py); test/txt2img-vae is the
# AutoencoderKL inside txt2img-shapes, served as a repo of its own.
HUB_REPOS: dict[str, Path] = {
    "test/gpt-austen": WEIGHTS / "gpt-austen",
    "test/txt2img-shapes": WEIGHTS / "txt2img-shapes",
    "test/txt2img-vae": WEIGHTS / "txt2img-shapes" / "vae",
    "test/vae-olivetti": WEIGHTS / "vae-olivetti",
    "test/gan-olivetti": WEIGHTS / "gan-olivetti",
    "test/flow-8gaussians": WEIGHTS / "flow-8gaussians",
}
FAKE_DATE = "2025-01-01T00:00:00.000Z"
_ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class RepoFileInfo:
    """One file of a served repo: its path in the repo, size and hashes."""

    path: str
    local: Path
    size: int
    git_oid: str  # sha1 of "blob {size}\0" + content, as git names a blob
    sha256: str

    @property
    def is_lfs(self) -> bool:
        return self.path.lower().endswith(LFS_SUFFIXES)

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.git_oid

    def tree_entry(self) -> dict:
        entry: dict = {"type": "file", "path": self.path, "size": self.size, "oid": self.git_oid}
        if self.is_lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry


@dataclass
class FakeRepo:
    """A local folder served as ``repo_id``; files are hashed once, at construction."""

    repo_id: str
    folder: Path
    files: dict[str, RepoFileInfo] = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} is not a folder")
        self.files = {}
        for local in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            rel = local.relative_to(self.folder).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue  # .git, .cache/huggingface of a local_dir download ...
            data = local.read_bytes()
            git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self.files[rel] = RepoFileInfo(rel, local, len(data), git_oid,
                                           hashlib.sha256(data).hexdigest())
        listing = "".join(f"{f.path}\0{f.sha256}\n" for f in self.files.values())
        self.sha = hashlib.sha1(f"{self.repo_id}\n{listing}".encode()).hexdigest()

    def folders(self) -> set[str]:
        """Every folder path that holds a file, at any depth (``"a"``, ``"a/b"``)."""
        out: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def info(self, with_blobs: bool) -> dict:
        siblings = []
        for f in self.files.values():
            sibling: dict = {"rfilename": f.path}
            if with_blobs:
                sibling.update(size=f.size, blobId=f.git_oid)
                if f.is_lfs:
                    sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sibling)
        return {"_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id,
                "author": self.repo_id.split("/")[0], "sha": self.sha, "lastModified": FAKE_DATE,
                "createdAt": FAKE_DATE, "private": False, "gated": False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
                "usedStorage": sum(f.size for f in self.files.values())}

    def tree(self, path: str, recursive: bool) -> list[dict] | None:
        """Entries under ``path`` ("" = root), folders before files; None if no such folder."""
        folders = self.folders()
        if path and path not in folders:
            return None
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

        dirs = [{"type": "directory", "path": d, "size": 0,
                 "oid": hashlib.sha1(f"{self.sha}:{d}".encode()).hexdigest()}
                for d in sorted(folders) if wanted(d)]
        return dirs + [f.tree_entry() for f in self.files.values() if wanted(f.path)]


@dataclass
class RequestRecord:
    """One request, logged when it arrives and updated *before* each write, so a client that
    has its answer always finds it counted."""

    method: str
    path: str  # without the query string
    started: float  # time.monotonic() when the request came in
    status: int = 0  # 0 until answered (or never, when hanging)
    bytes_sent: int = 0  # file body bytes handed to the socket
    seconds: float = 0.0  # time spent answering it


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx uses it
    server: _Server
    record: RequestRecord  # this request's log entry

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: requests are recorded in hub.requests

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.server.hub._handle(self, head=True)

    def do_GET(self) -> None:  # noqa: N802
        self.server.hub._handle(self, head=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: FakeHub


class FakeHub:
    """Serve ``{repo_id: folder}`` on 127.0.0.1 as Hugging Face Hub model repos.

    Args:
        repos: repo ids (``owner/name``) mapped to local folders.
        delay_per_chunk: seconds slept after each ``CHUNK_SIZE`` bytes of a file body.
        port: 0 for a free port; kept across ``stop()``/``start()`` so a restart reuses it.
    """

    def __init__(self, repos: Mapping[str, Path], *, delay_per_chunk: float = 0.0,
                 port: int = 0) -> None:
        self.repos = {rid: FakeRepo(rid, Path(folder)) for rid, folder in repos.items()}
        self.delay_per_chunk = delay_per_chunk
        self.hang = False  # accept connections but never answer
        self.port = port
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Listen (again) and return the endpoint URL, e.g. ``http://127.0.0.1:41234``."""
        if self._server is not None:
            return self.endpoint
        self._stopped.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.hub = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"fake-hub-{self.port}")
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        """Close the listening socket and every open connection: clients see a dead server."""
        if self._server is not None:  # first no new connections, then cut the live ones
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._stopped.set()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- counting ----------------------------------------------------------------------
    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def bytes_served(self) -> int:
        """File body bytes sent by GET ``resolve`` requests since the last reset."""
        with self._lock:
            return sum(r.bytes_sent for r in self.requests if "/resolve/" in r.path)

    def downloads(self) -> list[str]:
        """Paths of the ``resolve`` GETs that sent a body (file downloads), in order."""
        with self._lock:
            return [r.path for r in self.requests
                    if r.method == "GET" and "/resolve/" in r.path and r.bytes_sent]

    def calls(self) -> list[str]:
        """``"METHOD kind"`` per request, kind one of info/tree/resolve/other (for reports)."""
        with self._lock:
            records = list(self.requests)
        return [f"{r.method} {_kind(r.path)}" for r in records]

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # ---- routing -----------------------------------------------------------------------
    def _handle(self, handler: _Handler, head: bool) -> None:
        started = time.monotonic()
        url = urlsplit(handler.path)
        path, query = unquote(url.path), parse_qs(url.query)
        handler.record = RequestRecord("HEAD" if head else "GET", path, started)
        self._record(handler.record)
        if self.hang:  # never answer this one; the client's own timeout fires first
            while self.hang and not self._stopped.wait(0.05):
                pass
            handler.close_connection = True
        elif path == "/api/agent-harnesses":  # huggingface_hub's agent detection, once a day
            self._json(handler, head, {"standardEnvVars": [], "harnesses": {}}, None)
        elif m := _RESOLVE.match(path):
            self._resolve(handler, head, m["repo"], m["rev"], m["file"])
        elif m := _ROUTE.match(path):
            self._api(handler, head, m["repo"], m["rest"] or "", query)
        else:
            self._error(handler, head, 404, "", "Not a route of the fake hub")
        handler.record.seconds = time.monotonic() - started

    def _repo_at(self, handler: _Handler, head: bool, repo_id: str, revision: str
                 ) -> FakeRepo | None:
        """The repo if ``revision`` of ``repo_id`` exists, else None (the 404 is sent)."""
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, head, 404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if revision not in ("main", repo.sha):
            self._error(handler, head, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _api(self, handler: _Handler, head: bool, repo_id: str, rest: str,
             query: dict[str, list[str]]) -> None:
        flag = {k: v[-1].lower() in ("1", "true") for k, v in query.items()}
        revision, sub = "main", ""
        if rest.startswith("/revision/"):
            revision = rest[len("/revision/"):]
        elif rest.startswith("/tree/"):
            revision, _, sub = rest[len("/tree/"):].partition("/")
        elif rest:
            return self._error(handler, head, 404, "", f"Unsupported API route {rest}")
        repo = self._repo_at(handler, head, repo_id, revision)
        if repo is None:
            return
        if not rest.startswith("/tree/"):
            return self._json(handler, head, repo.info(flag.get("blobs", False)), repo.sha)
        entries = repo.tree(sub.strip("/"), flag.get("recursive", False))
        if entries is None:
            return self._error(handler, head, 404, "EntryNotFound",
                               f"{sub} does not exist on \"{revision}\"", repo.sha)
        return self._json(handler, head, entries, repo.sha)

    def _resolve(self, handler: _Handler, head: bool, repo_id: str, revision: str,
                 filename: str) -> None:
        repo = self._repo_at(handler, head, repo_id, revision)
        if repo is None:
            return
        info = repo.files.get(filename)
        if info is None:
            return self._error(handler, head, 404, "EntryNotFound",
                               f"{filename} does not exist on \"{revision}\"", repo.sha)
        start, end, status = 0, info.size - 1, 200
        if (rng := handler.headers.get("Range")) and (m := _RANGE.match(rng.strip())):
            start, end = int(m[1]), min(int(m[2]) if m[2] else info.size - 1, info.size - 1)
            if start >= info.size or end < start:
                return self._error(handler, head, 416, "", f"Bad range {rng}", repo.sha)
            status = 206
        handler.record.status = status
        handler.send_response(status)
        self._common_headers(handler, repo.sha)
        handler.send_header("ETag", f'"{info.etag}"')
        if info.is_lfs:
            handler.send_header("X-Linked-Etag", f'"{info.sha256}"')
            handler.send_header("X-Linked-Size", str(info.size))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{info.size}")
        handler.end_headers()
        if not head:
            self._send_file(handler, info.local, start, end + 1)

    # ---- responses ---------------------------------------------------------------------
    def _send_file(self, handler: _Handler, local: Path, start: int, stop: int) -> None:
        sent = 0
        try:
            with local.open("rb") as fh:
                fh.seek(start)
                while sent < stop - start and not self._stopped.is_set():
                    chunk = fh.read(min(CHUNK_SIZE, stop - start - sent))
                    if not chunk:
                        break
                    with self._lock:
                        handler.record.bytes_sent += len(chunk)
                    handler.wfile.write(chunk)
                    sent += len(chunk)
                    if self.delay_per_chunk:
                        time.sleep(self.delay_per_chunk)
        except OSError:  # the client went away (BrokenPipe, ConnectionReset)
            handler.close_connection = True
        if sent < stop - start:
            handler.close_connection = True  # stopped mid-body: the client sees a cut stream

    @staticmethod
    def _common_headers(handler: _Handler, commit: str | None) -> None:
        handler.send_header("Date", formatdate(usegmt=True))
        handler.send_header("X-Request-Id", f"fake-{time.monotonic_ns()}")
        if commit:
            handler.send_header("X-Repo-Commit", commit)

    def _json(self, handler: _Handler, head: bool, payload: object, commit: str | None,
              status: int = 200, error_headers: dict[str, str] | None = None
              ) -> None:
        body = json.dumps(payload).encode()
        handler.record.status = status
        handler.send_response(status)
        self._common_headers(handler, commit)
        for name, value in (error_headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _error(self, handler: _Handler, head: bool, status: int, code: str, message: str,
               commit: str | None = None) -> None:
        """An error as the hub sends it: ``X-Error-Code`` (what hf_raise_for_status maps to an
        exception), ``X-Error-Message``, and ``X-Repo-Commit`` when the repo exists."""
        headers = {"X-Error-Code": code} if code else {}
        headers["X-Error-Message"] = message
        self._json(handler, head, {"error": message}, commit, status, headers)

def _kind(path: str) -> str:
    if "/resolve/" in path:
        return "resolve " + path.split("/resolve/", 1)[1].split("/", 1)[-1]
    if path.startswith("/api/models/"):
        return "tree" if "/tree/" in path else "info"
    return "other " + path

