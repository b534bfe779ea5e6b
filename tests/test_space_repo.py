"""The repository is deployable as a Hugging Face Space: every committed binary goes through
LFS/Xet (the hub refuses plain binary blobs), and everything the app reads at run time is in it."""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lfs_patterns() -> list[str]:
    patterns = []
    for line in (ROOT / ".gitattributes").read_text().splitlines():
        parts = line.split()
        if parts and not line.startswith("#") and "filter=lfs" in parts:
            patterns.append(parts[0])
    return patterns


def is_binary(path: Path) -> bool:
    return b"\0" in path.read_bytes()[:8192]


def test_every_committed_binary_is_routed_to_lfs():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    patterns = lfs_patterns()
    binaries = [f for f in files if (ROOT / f).is_file() and is_binary(ROOT / f)]
    assert binaries, "expected the weights and pictures to be found as binaries"
    missed = [f for f in binaries if not any(fnmatch.fnmatch(Path(f).name, p) for p in patterns)]
    assert not missed, f"binary files not routed to LFS in .gitattributes: {missed}"


def test_bundled_faces_are_in_the_repo_with_their_credit():
    from playground.data.faces import BUNDLED_FACES, FACES_CREDIT, load_faces

    faces = load_faces(BUNDLED_FACES)
    assert faces.images.shape == (400, 64, 64) and faces.images.dtype.name == "float32"
    assert sorted(set(faces.persons.tolist())) == list(range(40))
    assert 0.0 <= faces.images.min() and faces.images.max() <= 1.0
    assert BUNDLED_FACES.stat().st_size < 2_000_000
    assert "AT&T Laboratories Cambridge" in FACES_CREDIT
    assert "AT&T Laboratories Cambridge" in (ROOT / "assets" / "README.md").read_text()
