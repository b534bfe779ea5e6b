"""Train or fine-tune a small GPT on an uploaded text, in the background of the app.

The run goes to ``runs/gpt/<name>`` (gitignored) and is registered under ``<name>`` (by
``core.live.train_and_register``) so the generate dropdown offers it in the same session.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from pathlib import Path

import torch

from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.live import LiveRun, train_and_register
from playground.core.training import LoopConfig
from playground.gpt import FAMILY, SHIPPED

MAX_UPLOAD_BYTES = 5 * 2**20
MIN_CHARS = 2000
MAX_STEPS = 3000
RUNS_DIR = registry.REPO_ROOT / "runs" / FAMILY
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


def _finetune_base():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry = registry.resolve(FAMILY, SHIPPED)
    if not entry.is_local or not entry.path.exists():
        raise UserInputError(f"{SHIPPED} is not installed, so it cannot be fine-tuned; choose "
                             "'train a new tiny GPT'.")
    # a fresh fp32 copy: the cached model the generate tab uses must not change
    model = AutoModelForCausalLM.from_pretrained(entry.path, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(entry.path)


def start_training(text: str, mode: str, steps, seed: int) -> tuple[LiveRun, str]:
    """Start the run in a thread; returns it and the model name it will be registered as.

    The run's ``result`` is that name once trained and registered, or None if it was stopped.
    The tokenizer and the task are built inside the thread (a BPE on megabytes takes seconds).
    """
    from playground.gpt.train import PRESETS, prepare_run

    if mode not in MODES:
        raise UserInputError(f"Choose a training mode: {', '.join(MODES)}.")
    steps = check_range("Training steps", steps, 10, MAX_STEPS, integer=True)
    opening = " ".join(text.split()[:6])  # samples continue the upload's own first words
    cfg = dataclasses.replace(PRESETS["custom"], steps=steps, sample_prompt=opening)
    base_model = base_tokenizer = None
    if mode == "finetune":
        base_model, base_tokenizer = _finetune_base()
        cfg = dataclasses.replace(cfg, block_size=base_model.config.n_positions, lr=5e-4,
                                  batch_size=4, warmup_steps=10, dropout=0.1)
    name = f"my-gpt-{uuid.uuid4().hex[:6]}"
    loop = LoopConfig(max_steps=steps, out_dir=str(RUNS_DIR / name),
                      log_every=max(1, min(10, steps // 20)), sample_every=max(10, steps // 5),
                      seed=seed, progress=False, checkpoint_dir=str(RUNS_DIR / f".{name}-ckpt"))

    def fn(on_log, on_sample, cancel: threading.Event):
        task, _ = prepare_run(cfg, loop, text, base_model=base_model,
                              base_tokenizer=base_tokenizer)
        train = train_and_register(loop, task, FAMILY, name, extra={"chat": False})
        return train(on_log, on_sample, cancel)

    return LiveRun(fn).start(), name
