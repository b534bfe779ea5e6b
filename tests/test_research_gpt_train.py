"""The research GPT trainer (research/gpt/train.py): validation carved from the training
novels, an EMA of the weights, resume, and the product's training when both switches are off."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
import torch
from safetensors.torch import load_file

from playground.core.errors import UserInputError
from playground.core.training import LoopConfig, checkpoint_states
from playground.gpt import train as T
from playground.gpt.data import make_split
from research.gpt import train as R
from tests.test_gpt_support import tiny_text

NOVELS = ("EMMA", "NORTHANGER ABBEY", "PRIDE AND PREJUDICE")  # the middle one is held out
PARAGRAPHS = 30


def novels_text() -> str:
    """Three short "novels" under titles ``split_novels`` finds; paragraph k of novel n starts
    with the tag <n.k>."""
    parts = []
    for n, title in enumerate(NOVELS):
        paragraphs = tiny_text(PARAGRAPHS, seed=n).split("\n\n")
        parts.append(f"{title}\n\n" + "".join(f"<{n}.{k}> {p}\n\n"
                                               for k, p in enumerate(paragraphs)))
    return "".join(parts)


def _tiny(**switches) -> R.ResearchGPTConfig:
    return dataclasses.replace(R.PRESETS["tiny"], **switches)


def _loop(out, steps: int = 20, **changes) -> LoopConfig:
    settings = {"log_every": 5, "progress": False, "device": "cpu", "checkpoint_every": 0,
                "seed": 3, **changes}
    return LoopConfig(max_steps=steps, out_dir=str(out), **settings)


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert set(a) <= set(b), set(a) - set(b)
    return all(torch.equal(value, b[key]) for key, value in a.items())


def test_the_validation_text_is_the_tail_of_each_training_novel():
    text = novels_text()
    split = R.carve_validation(text, 0.2)
    assert len(split.train) + len(split.val) == len(make_split(text).train)
    for n in (0, 2):
        in_val = [f"<{n}.{k}>" in split.val for k in range(PARAGRAPHS)]
        in_train = [f"<{n}.{k}>" in split.train for k in range(PARAGRAPHS)]
        assert all(v != t for v, t in zip(in_val, in_train, strict=True))  # one or the other
        first = in_val.index(True)
        assert not any(in_val[:first]) and all(in_val[first:])  # a tail
        assert 0.2 <= (PARAGRAPHS - first) / PARAGRAPHS <= 0.2 + 2 / PARAGRAPHS
    # whole paragraphs, the novels in order; the held-out novel in neither part
    assert split.val.startswith("<0.") and split.val.index("<0.") < split.val.index("<2.")
    assert split.train.startswith("EMMA\n\n") and "PRIDE AND PREJUDICE\n\n<2.0>" in split.train
    assert "<1." not in split.train + split.val and "NORTHANGER" not in split.train + split.val
    assert split.val_name.startswith("the last 20% of each training novel (Emma, Pride")
    assert R.carve_validation(text, 0.2) == split  # deterministic


def test_a_text_without_novel_titles_is_refused_with_val_split():
    with pytest.raises(UserInputError, match="titles"):
        R.carve_validation(tiny_text(), 0.1)
    assert R.split_for(_tiny()) is make_split


def test_the_run_trains_on_the_rest_and_evaluates_the_carved_text(tmp_path):
    text = novels_text()
    split = R.carve_validation(text, 0.2)
    cfg = _tiny(val_split=0.2)
    task, _ = T.prepare_run(cfg, _loop(tmp_path / "m"), text, split_text=R.split_for(cfg))
    assert task.summary["train_chars"] == len(split.train)
    assert task.summary["val_chars"] == len(split.val)
    assert task.summary["held_out"] == split.val_name
    R.run_training(cfg, _loop(tmp_path / "run"), text)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["held_out"] == split.val_name and summary["val_chars"] == len(split.val)
    assert summary["unused_novel"].startswith("the whole novel Northanger Abbey: neither")
    assert summary["gpt_config"]["val_split"] == 0.2
    assert summary["final_metrics"]["val_nats_per_char"] > 0


def test_with_the_switches_off_it_trains_as_the_product_and_a_seed_fixes_it(tmp_path):
    text = novels_text()
    T.run_training(T.PRESETS["tiny"], _loop(tmp_path / "product"), text)
    R.run_training(_tiny(), _loop(tmp_path / "research"), text)
    assert _same(_weights(tmp_path / "product"), _weights(tmp_path / "research"))
    cfg = _tiny(val_split=0.2, ema_decay=0.9)
    R.run_training(cfg, _loop(tmp_path / "a"), text)
    R.run_training(cfg, _loop(tmp_path / "b"), text)
    R.run_training(cfg, _loop(tmp_path / "c", seed=4), text)
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_the_saved_model_is_the_ema_and_the_raw_model_trains_as_without_it(tmp_path):
    text = novels_text()
    R.run_training(_tiny(val_split=0.2), _loop(tmp_path / "plain"), text)
    R.run_training(_tiny(val_split=0.2, ema_decay=0.9, ema_start=5), _loop(tmp_path / "ema"),
                   text)
    states = checkpoint_states(tmp_path / "ema-ckpt")
    saved = _weights(tmp_path / "ema")
    assert _same(saved, states["gpt_ema"]) and not _same(saved, states["gpt"])
    assert _same(_weights(tmp_path / "plain"), states["gpt"])  # the EMA changes no step
    rows = [r for r in json.loads((tmp_path / "ema-ckpt" / "metrics.json").read_text())
            if "val_nats_per_char" in r]
    assert [r["step"] for r in rows] == [10, 20]
    assert all(r["ema_val_nats_per_char"] > 0 for r in rows)
    assert rows[-1]["ema_val_nats_per_char"] != rows[-1]["val_nats_per_char"]
    summary = json.loads((tmp_path / "ema" / "training_summary.json").read_text())
    assert summary["saved_weights"].startswith("EMA of the weights (decay 0.9")
    # before ema_start the EMA is a copy of the weights
    R.run_training(_tiny(val_split=0.2, ema_decay=0.9, ema_start=20), _loop(tmp_path / "copy"),
                   text)
    assert _same(_weights(tmp_path / "copy"), _weights(tmp_path / "plain"))


def test_resume_continues_as_the_uninterrupted_run(tmp_path):
    text = novels_text()
    cfg = _tiny(val_split=0.2, ema_decay=0.9, dropout=0.1)  # dropout: the RNG is restored too
    straight = R.run_training(cfg, _loop(tmp_path / "a"), text)
    cancel = threading.Event()

    def stop_at_10(step: int, row: dict) -> None:
        if step == 10:
            cancel.set()
    stopped = R.run_training(cfg, _loop(tmp_path / "b"), text, on_log=stop_at_10, cancel=cancel)
    assert stopped.cancelled and stopped.steps == 10
    resumed = R.run_training(cfg, _loop(tmp_path / "b", resume=True), text)
    assert resumed.steps == 20
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert _same(checkpoint_states(tmp_path / "a-ckpt")["gpt"],
                 checkpoint_states(tmp_path / "b-ckpt")["gpt"])
    keys = ("step", "loss", "val_nats_per_char", "ema_val_nats_per_char")
    assert ([[r.get(k) for k in keys] for r in straight.history]
            == [[r.get(k) for k in keys] for r in resumed.history])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"val_split": 0.5}, "val_split must be at least 0 and below 0.5"),
    ({"val_split": -0.1}, "val_split must be between 0 and 0.5"),
    ({"val_split": "some"}, "val_split must be a number"),
    ({"ema_decay": 1.0}, "ema_decay must be at least 0 and below 1"),
    ({"ema_decay": -0.5}, "ema_decay must be between 0 and 1"),
    ({"ema_start": -1}, "ema_start must be between"),
    ({"ema_decay": 0.99, "time_budget_s": 60}, "time_budget_s with ema_decay"),
    ({"n_head": 3}, "multiple of n_head"),  # the product's checks still apply
])
def test_bad_values_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(UserInputError, match=message):
        R.resolve_config("tiny", overrides)


def test_presets_are_the_products_plus_the_validation_ones():
    product_fields = [f.name for f in dataclasses.fields(T.GPTConfig)]
    for name, cfg in T.PRESETS.items():
        ours = R.resolve_config(name)
        assert [getattr(ours, f) for f in product_fields] == [getattr(cfg, f)
                                                              for f in product_fields]
        assert (ours.val_split, ours.ema_decay) == (0.0, 0.0)
    base = dataclasses.asdict(T.PRESETS["austen-prose"])
    for name, ema in (("austen-prose-val", 0.0), ("austen-prose-val-ema", 0.999)):
        cfg = R.resolve_config(name)
        assert (cfg.val_split, cfg.ema_decay) == (0.05, ema)
        assert {k: v for k, v in dataclasses.asdict(cfg).items() if k in base} == base


def test_the_cli_takes_the_product_flags(tmp_path, monkeypatch):
    data = tmp_path / "novels.txt"
    data.write_text(novels_text(), encoding="utf-8")
    result = R.main(["--preset", "tiny", "--data", str(data), "--max-steps", "4", "--out",
                     str(tmp_path / "cli"), "--set", "val_split=0.2", "--set", "ema_decay=0.5"])
    assert result.steps == 4
    summary = json.loads((tmp_path / "cli" / "training_summary.json").read_text())
    assert summary["gpt_config"]["ema_decay"] == 0.5 and "saved_weights" in summary
    with pytest.raises(SystemExit, match="val_split must be"):
        R.main(["--preset", "tiny", "--set", "val_split=0.7", "--out", str(tmp_path / "x")])
