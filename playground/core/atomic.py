"""Atomic folder writes: build in a temporary sibling folder, then rename into place.

A crash or a cancel never leaves a half-written model in ``weights/``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_save_dir(final_dir: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)``, then replace ``final_dir`` with it in one rename.

    If ``write`` raises, the temporary folder is removed and ``final_dir`` is untouched.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = final_dir.parent / f".{final_dir.name}.tmp-{tag}"
    old = final_dir.parent / f".{final_dir.name}.old-{tag}"
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final_dir.exists():
        final_dir.rename(old)
    tmp.rename(final_dir)
    shutil.rmtree(old, ignore_errors=True)
    return final_dir
