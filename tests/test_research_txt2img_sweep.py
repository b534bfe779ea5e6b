"""research/txt2img/autoguidance_sweep.py on a tiny random pipeline: the rows it writes, the
resume that skips them, and the rule that picks a setting."""

from __future__ import annotations

import json

import pytest
import torch

from playground.txt2img import model as M
from playground.txt2img.train import PRESETS
from research.txt2img import autoguidance_sweep as S

TINY = PRESETS["tiny"].model


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    torch.manual_seed(0)
    M.save_pipeline(M.build_untrained_pipeline(TINY), root / "pipe")
    torch.manual_seed(1)
    M.build_unet(TINY, M.latent_size(TINY)).save_pretrained(root / "guide")
    return root


def test_sweep_writes_each_setting_once_and_resumes(pipes, capsys):
    out = pipes / "sweep.jsonl"
    argv = [str(pipes / "pipe"), "--guide", str(pipes / "guide"), "--weight", "1",
            "--max-t", "600", "--seeds", "0", "1", "--n", "2", "--steps", "2", "--out", str(out)]
    table, _ = S.main(argv)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4  # (plain, guided) x seed sets 0, 1
    assert {(r["guide"], r["seed"]) for r in rows} == {(S.PLAIN, 0), (S.PLAIN, 1),
                                                       (str(pipes / "guide"), 0),
                                                       (str(pipes / "guide"), 1)}
    assert all(r["held_out"]["n"] == 2 and r["two_objects"]["n"] == 1 for r in rows)
    assert len(table) == 2
    S.main(argv)  # everything is there: nothing is sampled again
    assert len(out.read_text().splitlines()) == 4
    assert "seed 0" not in capsys.readouterr().out.split("| guide |")[-1]


def _row(guide, seed, cs, all_five, two):
    return {"guide": guide, "guidance": 4.0, "weight": 1.0, "max_t": 600.0, "seed": seed,
            "n": 100, "held_out": {"colour+shape": cs, "all": all_five,
                                   "artefacts": {"clean": 1.0}},
            "two_objects": {"colour+shape": two, "all": two}}


def test_the_rule_needs_all_five_on_every_seed_set_then_takes_colour_and_shape():
    rows = [_row("a", 0, 0.99, 0.95, 0.1), _row("a", 1, 0.99, 0.90, 0.1),  # one set < 0.92
            _row("b", 0, 0.96, 0.93, 0.2), _row("b", 1, 0.96, 0.94, 0.2),
            _row("c", 0, 0.96, 0.95, 0.5), _row("c", 1, 0.96, 0.95, 0.5),  # tie: two objects
            _row("d", 0, 0.99, 0.99, 0.9)]  # not measured on seed set 1: left out
    table, best = S.choose(rows, [0, 1], 0.92)
    assert {r["guide"] for r in table} == {"a", "b", "c"}
    assert best["guide"] == "c" and best["held_out_colour+shape"] == pytest.approx(0.96)
    assert S.choose(rows, [0, 1], 0.999)[1] is None
    assert "**96.0% / 95.0%**" in S.markdown(table, best)


@pytest.mark.parametrize("flags, message", [
    (["--weight", "-1"], "--weight must be between 0 and 10, got -1"),
    (["--max-t", "1200"], "--max-t must be between 0 and 1000, got 1200"),
    (["--guidance", "nan"], "--guidance must be between 0 and 30, got nan"),
    (["--n", "1"], "--n must be at least 2"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--guide", "no/such/folder"], "--guide no/such/folder: neither a UNet folder"),
])
def test_bad_flags_get_a_clear_message_and_nothing_runs(pipes, tmp_path, capsys, flags, message):
    out = tmp_path / "sweep.jsonl"
    with pytest.raises(SystemExit):
        S.main([str(pipes / "pipe"), "--out", str(out), *flags])
    assert message in capsys.readouterr().err
    assert not out.exists()
