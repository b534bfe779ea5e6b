"""Train or fine-tune a small GPT on an uploaded text, in a worker process (``core.live``).

The run is saved in the session's folder and registered under ``my-gpt-<id>`` for that session
only, so its generate dropdown offers it (and no other user sees the text it learned).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, start_live_run, step_cap
from playground.core.training import LoopConfig, TrainTask
from playground.gpt import FAMILY, SHIPPED

MAX_UPLOAD_BYTES = 5 * 2**20
MIN_CHARS = 2000
MAX_STEPS = 3000
SHARED_MAX_STEPS = 600  # on a shared deployment (a Space): about two minutes
MODES = {"new": "Train a new tiny GPT (its own tokenizer)",
         "finetune": f"Fine-tune {SHIPPED} (keeps its tokenizer)"}


def read_upload(path: str | Path | None) -> str:
    """The uploaded file as text: UTF-8 (with or without BOM), else Windows-1252, else UTF-8
    with replacement characters; binary files and files with many undecodable bytes are
    refused with a clear message."""
    if not path:
        raise UserInputError("Upload a .txt file first.")
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise UserInputError(f"The file is too big ({size / 2**20:.1f} MB); the limit is "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB of text.")
    raw = path.read_bytes()
    if b"\0" in raw[:65536]:
        raise UserInputError("That file looks binary (it contains NUL bytes); upload plain text "
                             "(.txt).")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # not UTF-8: most often Windows-1252 / Latin-1
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
    controls = sum(1 for c in text[:65536] if ord(c) < 32 and c not in "\n\r\t\f")
    if controls > len(text[:65536]) // 100 or text.count("\ufffd") > len(text) // 100:
        raise UserInputError("That file does not look like text (too many control characters "
                             "or undecodable bytes); upload a plain UTF-8 .txt file.")
    text = text.replace("\r\n", "\n")
    if len(text.strip()) < MIN_CHARS:
        raise UserInputError(f"The text is too short ({len(text.strip())} characters); give at "
                             f"least {MIN_CHARS:,} so there is something to learn.")
    return text


def _finetune_base_folder() -> Path:
    entry = registry.resolve(FAMILY, SHIPPED)
    if not entry.is_local or not entry.path.exists():
        raise UserInputError(f"{SHIPPED} is not installed, so it cannot be fine-tuned; choose "
                             "'train a new tiny GPT'.")
    return entry.path


def start_training(text: str, mode: str, steps, seed: int) -> tuple[LiveRun, str]:
    """Queue the run; returns it and the model name it will be registered as.

    The run's ``result`` is that name once trained and registered, or None if it was stopped.
    The tokenizer and the task are built in the worker (a BPE on megabytes takes seconds).
    """
    if mode not in MODES:
        raise UserInputError(f"Choose a training mode: {', '.join(MODES)}.")
    steps = check_range("Training steps", steps, 10, step_cap(MAX_STEPS, SHARED_MAX_STEPS),
                        integer=True)
    base = str(_finetune_base_folder()) if mode == "finetune" else None
    run = start_live_run(FAMILY, "playground.gpt.live:build_run",
                         {"text": text, "steps": steps, "seed": seed, "base": base},
                         label="my-gpt-{id}", entry_extra={"chat": False})
    return run, run.label


def build_run(out_dir: str, text: str, steps: int, seed: int,
              base: str | None) -> tuple[LoopConfig, TrainTask]:
    """In the training worker: the loop settings and the task (new, or a fine-tune of
    ``base``: a fresh fp32 copy, so the model the generate tab uses never changes)."""
    from playground.gpt.train import PRESETS, prepare_run

    opening = " ".join(text.split()[:6])  # samples continue the upload's own first words
    cfg = dataclasses.replace(PRESETS["custom"], steps=steps, sample_prompt=opening)
    base_model = base_tokenizer = None
    if base is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        base_tokenizer = AutoTokenizer.from_pretrained(base)
        cfg = dataclasses.replace(cfg, block_size=base_model.config.n_positions, lr=5e-4,
                                  batch_size=4, warmup_steps=10, dropout=0.1)
    loop = LoopConfig(max_steps=steps, out_dir=out_dir,
                      log_every=max(1, min(10, steps // 20)), sample_every=max(10, steps // 5),
                      seed=seed, progress=False, checkpoints=False)
    task, _ = prepare_run(cfg, loop, text, base_model=base_model, base_tokenizer=base_tokenizer)
    return loop, task
