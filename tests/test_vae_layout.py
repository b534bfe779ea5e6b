"""The VAE folder reads like every family's: role file names, no import circle, short files."""

from __future__ import annotations

from tests.test_import_graph import PACKAGE, find_cycle, import_graph

VAE = PACKAGE / "vae"


def test_no_import_cycle_among_vae_modules():
    graph = {module: {t for t in targets if t.startswith("playground.vae")}
             for module, targets in import_graph().items() if module.startswith("playground.vae")}
    assert find_cycle(graph) is None, find_cycle(graph)


def test_role_files_and_sizes():
    for role in ("model", "train", "inference", "tab", "live", "card"):
        assert (VAE / f"{role}.py").is_file(), role
    long = {p.name: n for p in VAE.glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
