"""Reproducibility records: model + content hash, parameters, seed and library versions.

Attached to every output: PNG text chunks for images, JSON otherwise.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from PIL import Image, PngImagePlugin

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "gradio", "zuko", "tokenizers")
PNG_KEY = "playground"  # JSON record
PNG_PARAMS_KEY = "parameters"  # A1111-style one-line summary, readable by other tools


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _tree_signature(folder: Path) -> tuple:
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in folder.rglob("*") if p.is_file()))


@lru_cache(maxsize=64)
def _hash_tree(folder: str, signature: tuple) -> str:
    digest = hashlib.sha256()
    root = Path(folder)
    for rel, _size, _mtime in signature:
        digest.update(rel.encode())
        with open(root / rel, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def content_hash(source: str) -> str:
    """sha256 (16 hex) of a local model folder's files; for a hub id, the id itself."""
    path = Path(source)
    if path.is_dir():
        return "sha256:" + _hash_tree(str(path), _tree_signature(path))
    return f"hub:{source}"


def make_record(family: str, model: str, source: str, params: dict, seed: int | None,
                revision: str | None = None) -> dict:
    """The record attached to one output."""
    record = {"family": family, "model": model, "model_hash": content_hash(source),
              "params": params, "seed": seed, "versions": library_versions()}
    if revision:
        record["revision"] = revision
    return record


def record_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def png_info(record: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, record_json(record))
    summary = ", ".join(f"{k}: {v}" for k, v in record.get("params", {}).items())
    tail = f"seed: {record.get('seed')}, model: {record['model']}"
    info.add_text(PNG_PARAMS_KEY, f"{summary}, {tail}" if summary else tail)
    return info


def save_png(image: Image.Image, record: dict, path: str | Path | None = None) -> Path:
    """Write ``image`` as PNG carrying ``record`` in its text chunks; returns the path."""
    if path is None:
        handle = tempfile.NamedTemporaryFile(prefix="playground-", suffix=".png", delete=False)
        handle.close()
        path = handle.name
    image.save(path, format="PNG", pnginfo=png_info(record))
    return Path(path)


def read_png_record(image_or_path) -> dict | None:
    """The record stored by ``save_png``, or None if the PNG has none."""
    image = image_or_path if isinstance(image_or_path, Image.Image) else Image.open(image_or_path)
    text = getattr(image, "text", None) or image.info
    raw = text.get(PNG_KEY) if text else None
    return json.loads(raw) if raw else None
