"""GPT training: the loss falls, every parameter learns, save/load and checkpoint export."""

from __future__ import annotations

import json

import pytest
import torch

from playground.core.training import LoopConfig, StepContext
from playground.gpt.train import PRESETS, build_task, cosine_with_warmup, resolve_config
from tests.test_gpt_support import tiny_model_dir, tiny_text


def test_a_few_steps_lower_the_loss_and_train_every_parameter():
    from accelerate import Accelerator

    from playground.gpt.data import train_tokenizer

    cfg = PRESETS["tiny"]
    text = tiny_text()
    tok = train_tokenizer(text, cfg.vocab_size)
    task = build_task(cfg, LoopConfig(max_steps=40), text[:-2000], text[-2000:], tok)
    model, opt = task.models["gpt"], task.optimizers["adamw"]
    acc = Accelerator(cpu=True)
    batch = next(iter(task.batches))
    assert batch.shape == (cfg.batch_size, cfg.block_size + 1) and batch.dtype == torch.long
    model.train()
    first = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
    first.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    opt.zero_grad()
    ctx = StepContext(acc, task.models, task.optimizers, task.schedulers, 1, torch.Generator())
    losses = [task.step(ctx, next(task.batches))["loss"] for _ in range(40)]
    assert sum(losses[-5:]) / 5 < first.item() - 1.0, (first.item(), losses[-5:])


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    cfg = resolve_config("austen", {"warmup_steps": 10, "min_lr_ratio": 0.1})
    f = cosine_with_warmup(cfg, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) < f(20) < 1.0 and f(100) == pytest.approx(0.1)


def _old_cosine_with_warmup(cfg, total, budget_progress=None):
    """The GPT's own schedule before it moved onto core.schedules (the reference numbers)."""
    import math

    warm = max(1, min(cfg.warmup_steps, total // 4))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
        if budget_progress is not None:
            progress = max(progress, budget_progress)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class _FixedBudget:
    def __init__(self, progress):
        self.value = progress

    def progress(self):
        return self.value


@pytest.mark.parametrize(("preset", "total"), [("austen", 1700), ("austen", 100), ("tiny", 30),
                                               ("custom", 7), ("austen-cuda", 6000)])
def test_schedule_on_core_gives_the_old_numbers(preset, total):
    cfg = resolve_config(preset)
    new, old = cosine_with_warmup(cfg, total), _old_cosine_with_warmup(cfg, total)
    for step in sorted({0, 1, 2, 3, 5, 50, 99, 100, 101, total // 2, total - 1, total, total + 5}):
        assert new(step) == old(step), step  # identical, not just close
    for progress in (0.0, 0.3, 0.9, 1.0):  # the time budget: whichever is further along
        new = cosine_with_warmup(cfg, total, _FixedBudget(progress))
        old = _old_cosine_with_warmup(cfg, total, progress)
        for step in (0, 1, total // 3, total // 2, total):
            assert new(step) == old(step), (progress, step)


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("tiny", {"n_embed": 3}, "Unknown GPT setting.*n_embed"),
    ("nano", {}, "Unknown preset 'nano'"),
    ("tiny", {"n_embd": 30, "n_head": 4}, "multiple of n_head"),
    ("tiny", {"vocab_size": 100}, "vocab_size"),
    ("tiny", {"n_layer": 0}, "n_layer must be a positive"),
    ("tiny", {"min_lr_ratio": 2}, "min_lr_ratio"),
])
def test_bad_presets_and_settings_are_refused(preset, overrides, message):
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        resolve_config(preset, overrides)


def test_every_preset_resolves():
    for name in PRESETS:
        assert resolve_config(name) == PRESETS[name]


def test_trained_folder_round_trips_through_from_pretrained(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_dir(str(tmp_path_factory.getbasetemp()))
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["steps"] == 30 and summary["final_metrics"]["val_nats_per_char"] > 0
    assert all(f.stat().st_size <= 10 * 2**20 for f in folder.iterdir())
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("the lady said", return_tensors="pt")["input_ids"]
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_checkpoint_exports_the_same_model(tmp_path_factory, tmp_path):
    from transformers import AutoModelForCausalLM

    from playground.gpt.export import export

    root = tmp_path_factory.getbasetemp()
    folder = tiny_model_dir(str(root))
    assert export(root / "tiny-gpt-ckpt", "tiny", tmp_path / "exported") == 30
    summary = json.loads((tmp_path / "exported" / "training_summary.json").read_text())
    assert summary["steps"] == 30 and summary["preset"] == "tiny"
    assert (tmp_path / "exported" / "metrics.csv").exists()
    a = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "exported", dtype=torch.float32)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert b.lm_head.weight.data_ptr() == b.transformer.wte.weight.data_ptr()


def test_a_checkpoint_without_recorded_model_names_still_exports(tmp_path_factory, tmp_path):
    """Checkpoints written before progress.json named the models (the shipped run's) export."""
    import shutil

    from playground.gpt.export import export

    root = tmp_path_factory.getbasetemp()
    tiny_model_dir(str(root))
    old = tmp_path / "old-ckpt"
    shutil.copytree(root / "tiny-gpt-ckpt", old)
    shutil.copytree(root / "tiny-gpt-tokenizer-ckpt", tmp_path / "old-tokenizer-ckpt")
    (old / "progress.json").write_text(json.dumps({"step": 30}))
    assert export(old, "tiny", tmp_path / "exported") == 30


def test_a_spent_time_budget_stops_and_exports_the_last_checkpoint(tmp_path):
    """The shipped run's path: the budget runs out, the loop checkpoints, the trainer exports."""
    from playground.gpt.train import run_training

    cfg = resolve_config("tiny", {"time_budget_s": 0.5, "eval_every": 0})
    loop = LoopConfig(max_steps=100_000, out_dir=str(tmp_path / "run"), log_every=5,
                      progress=False)
    result = run_training(cfg, loop, tiny_text())
    assert not result.cancelled and 0 < result.steps < 100_000
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["steps"] == result.steps and summary["stopped_by"].startswith("time budget")
    assert summary["gpt_config"]["time_budget_s"] == 0.5
    assert (tmp_path / "run" / "config.json").exists()


def test_tiny_preset_trains_on_the_bundled_sample_without_data(tmp_path):
    from playground.core.errors import UserInputError
    from playground.gpt.train import TINY_TEXT, train_cli

    assert TINY_TEXT.exists() and 2000 < TINY_TEXT.stat().st_size < 8192
    loop = LoopConfig(max_steps=10, out_dir=str(tmp_path / "run"), progress=False)
    result = train_cli("tiny", loop, None, {})
    assert result.steps == 10 and result.out_dir is not None
    meta = json.loads((tmp_path / "run" / "training_preset.json").read_text())
    assert meta["data"] == "tiny_text.txt" and meta["preset"] == "tiny"
    with pytest.raises(UserInputError, match="needs --data"):
        train_cli("austen", loop, None, {})
