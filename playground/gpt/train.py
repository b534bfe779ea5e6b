"""Train a GPT on a text file with the shared loop.

`python -m playground.train gpt --preset austen --data austen.txt --out weights/gpt-austen`

The tokenizer is trained on the training split first (and kept beside the checkpoint so a
resumed run uses the very same vocabulary); the held-out split is only ever evaluated.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.core.config import resolve_preset
from playground.core.errors import UserInputError
from playground.core.schedules import cosine, warmup_cosine
from playground.core.training import (
    LoopConfig,
    StepContext,
    TrainResult,
    TrainTask,
    export_checkpoint,
    train_loop,
)
from playground.gpt.data import (
    END_OF_TEXT,
    TextSplit,
    encode,
    make_split,
    random_batches,
    read_text,
    reflow,
)
from playground.gpt.model import build_model, fill_tied_head_on_load

TINY_TEXT = Path(__file__).with_name("tiny_text.txt")  # an original few-KB sample for `tiny`


@dataclass
class GPTConfig:
    """A GPT-2-style causal LM trained from scratch on one text file."""

    vocab_size: int = 8192  # byte-level BPE trained on the training split
    n_embd: int = 256
    n_layer: int = 6
    n_head: int = 4
    block_size: int = 256  # context length in tokens
    dropout: float = 0.1  # residual and embedding dropout
    attn_dropout: float = 0.0  # dropout inside attention makes SDPA ~30% slower on CPU
    batch_size: int = 16
    steps: int = 1700  # default number of optimisation steps for this preset
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    compile: bool = False  # torch.compile the training forward (~20% faster on CPU, ~40 s start)
    time_budget_s: float = 0.0  # >0: fit the LR schedule into this wall time, then stop
    eval_every: int = 100  # steps between held-out evaluations (0 = never)
    eval_windows: int = 24  # (block_size)-token windows of the held-out text per evaluation
    reflow: bool = False  # train and score on data.reflow(text): paragraphs, no printed wraps
    sample_prompt: str = "It is a truth universally acknowledged"
    sample_tokens: int = 60


PRESETS: dict[str, GPTConfig] = {
    # tests: seconds on one CPU thread
    "tiny": GPTConfig(vocab_size=320, n_embd=32, n_layer=2, n_head=2, block_size=32,
                      dropout=0.0, batch_size=8, steps=30, lr=3e-3, warmup_steps=3,
                      eval_every=10, eval_windows=4, sample_tokens=8),
    # the in-browser "train on your own text" default: a few minutes on a CPU
    "custom": GPTConfig(vocab_size=1024, n_embd=128, n_layer=3, n_head=4, block_size=128,
                        dropout=0.05, batch_size=8, steps=300, lr=2e-3, warmup_steps=20,
                        eval_every=50, eval_windows=8, sample_tokens=40),
    # the shipped weights/gpt-austen: ~90 minutes on one CPU thread
    "austen": GPTConfig(compile=True),
    # the next shipped weights/gpt-austen (issue 27): paragraphs without printed line wraps,
    # context 512; 8 x 256 (8.55 M parameters, 34 MB in fp32) at ~8.4 s/step on one quiet CPU
    # thread, so 2,400 steps (19.7 M tokens, ~28 passes) take ~5.6 h (research/gpt-prose.md)
    "austen-prose": GPTConfig(n_embd=256, n_layer=8, n_head=4, block_size=512, dropout=0.15,
                              batch_size=16, steps=2400, lr=1.5e-3, warmup_steps=150,
                              eval_every=100, eval_windows=32, reflow=True, compile=True),
    # the same recipe, larger, for a GPU
    "austen-cuda": GPTConfig(vocab_size=8192, n_embd=512, n_layer=8, n_head=8,
                             block_size=512, dropout=0.1, batch_size=32, steps=6000,
                             lr=1e-3, warmup_steps=300),
}
DEFAULT_PRESET = "austen"


def resolve_config(preset: str, overrides: dict | None = None) -> GPTConfig:
    """``PRESETS[preset]`` with ``overrides`` (``--set KEY=VALUE``), its values checked."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="GPT")
    if cfg.vocab_size < 258:
        raise UserInputError(f"vocab_size must be at least 258 (the 256 bytes, the end-of-text "
                             f"token and one merge), got {cfg.vocab_size}.")
    for name in ("n_embd", "n_layer", "n_head", "block_size", "batch_size", "steps"):
        if int(getattr(cfg, name)) < 1:
            raise UserInputError(f"{name} must be a positive integer, got {getattr(cfg, name)}.")
    if cfg.n_embd % cfg.n_head:
        raise UserInputError(f"n_embd ({cfg.n_embd}) must be a multiple of n_head "
                             f"({cfg.n_head}).")
    if not 0 <= cfg.min_lr_ratio <= 1 or not 0 <= cfg.dropout < 1 or cfg.lr <= 0:
        raise UserInputError("lr must be > 0, min_lr_ratio within [0, 1], dropout within [0, 1).")
    return cfg


class TimeBudget:
    """Wall-clock share of a budget, so a run on a busy CPU still finishes its LR schedule.

    The clock starts at the first step of this process; a resumed run continues the cosine
    from where the checkpoint left it (``start_progress``) and spends the rest in the budget.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.t0, self.start_progress = seconds, None, 0.0

    def start(self, progress: float) -> None:
        if self.t0 is None:
            self.t0, self.start_progress = time.perf_counter(), progress

    def progress(self) -> float:
        if not self.seconds or self.t0 is None:
            return 0.0
        used = (time.perf_counter() - self.t0) / self.seconds
        return min(1.0, self.start_progress + (1 - self.start_progress) * used)

    @property
    def spent(self) -> bool:
        return bool(self.seconds) and self.t0 is not None and self.progress() >= 1.0


def cosine_with_warmup(cfg: GPTConfig, total_steps: int,
                       budget: TimeBudget | None = None) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from 1/warm (``core.schedules.warmup_cosine``, offset 1),
    then cosine down to ``min_lr_ratio``; with a time budget the cosine follows whichever of
    steps or wall time is further along."""
    warm = max(1, min(cfg.warmup_steps, total_steps // 4))

    def step_progress(step: int) -> float:
        return min(1.0, max(0.0, (step - warm) / max(1, total_steps - warm)))

    def factor(step: int) -> float:
        if budget is None or step < warm:
            return warmup_cosine(step, total_steps, warm, cfg.min_lr_ratio, warmup_offset=1)
        return cosine(max(step_progress(step), budget.progress()), cfg.min_lr_ratio)
    factor.step_progress = step_progress  # the budget starts its clock from here
    return factor


def make_optimizer(model: torch.nn.Module, cfg: GPTConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, LayerNorms or positions)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 and "wpe" not in name else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@torch.no_grad()
def sample_text(model, tokenizer, prompt: str, max_new_tokens: int, seed: int = 0,
                temperature: float = 0.8, top_k: int = 40) -> str:
    """A short top-k sample from our own generator (training previews; not the UI path)."""
    gen = torch.Generator().manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] == 0:
        ids = torch.tensor([[tokenizer.bos_token_id]])
    block = model.config.n_positions
    start = ids.shape[1]
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids[:, -block:]).logits[0, -1].float() / temperature
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), -1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)[None]], 1)
    return prompt + tokenizer.decode(ids[0, start:].tolist())


def save_model(model, tokenizer, folder: Path) -> None:
    """The artefact: fp32 safetensors shards of at most 9 MB, and the tokenizer.

    fp32, so ``from_pretrained(folder)`` with no dtype argument runs on a CPU (issue 21).
    """
    copy.deepcopy(model).float().save_pretrained(folder, max_shard_size="9MB")
    tokenizer.save_pretrained(folder)


def held_out_windows(ids: torch.Tensor, block: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced (block+1)-token windows of the held-out ids: (count, block+1)."""
    count = max(1, min(count, (len(ids) - 1) // (block + 1)))
    if count < 1 or len(ids) < block + 2:
        return ids[: block + 1][None]
    stride = (len(ids) - block - 1) // count
    return torch.stack([ids[i * stride: i * stride + block + 1] for i in range(count)])


def build_task(cfg: GPTConfig, loop: LoopConfig, train_text: str, val_text: str, tokenizer,
               model=None, val_name: str = "", stop: threading.Event | None = None) -> TrainTask:
    """The TrainTask: model (new, or ``model`` to fine-tune), AdamW, cosine schedule, batches."""
    torch.manual_seed(loop.seed)
    model = model if model is not None else build_model(cfg, tokenizer)
    block = min(cfg.block_size, model.config.n_positions)
    eos = torch.tensor([tokenizer.eos_token_id])
    train_ids = torch.cat([eos, encode(tokenizer, train_text)])
    val_ids = torch.cat([eos, encode(tokenizer, val_text)]) if val_text else train_ids[:0]
    chars_per_token = len(val_text) / max(1, len(val_ids) - 1)
    optimizer = make_optimizer(model, cfg)
    total = loop.max_steps or cfg.steps
    budget = TimeBudget(cfg.time_budget_s) if cfg.time_budget_s else None
    lr_factor = cosine_with_warmup(cfg, total, budget)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    gen = torch.Generator().manual_seed(loop.seed + 1)
    windows = held_out_windows(val_ids, block, cfg.eval_windows) if len(val_ids) > 2 else None
    forward = torch.compile(model) if cfg.compile else None

    def step(ctx: StepContext, batch: torch.Tensor) -> dict[str, float]:
        if budget is not None:
            budget.start(lr_factor.step_progress(ctx.step))
        net = forward if forward is not None else ctx.models["gpt"]
        out = net(input_ids=batch[:, :-1], labels=batch[:, :-1])
        ctx.accelerator.backward(out.loss)
        if cfg.grad_clip:
            ctx.accelerator.clip_grad_norm_(ctx.models["gpt"].parameters(), cfg.grad_clip)
        ctx.optimizers["adamw"].step()
        ctx.schedulers["lr"].step()
        ctx.optimizers["adamw"].zero_grad(set_to_none=True)
        if budget is not None and budget.spent and stop is not None:
            stop.set()  # the loop ends after this step and checkpoints it
        return {"loss": out.loss.item(), "lr": ctx.schedulers["lr"].get_last_lr()[0]}

    def evaluate(models, step: int) -> dict[str, float]:
        # called at every log row; only every eval_every steps is the held-out text scored
        if windows is None or not cfg.eval_every or step % cfg.eval_every:
            return {}
        loss = models["gpt"](input_ids=windows[:, :-1], labels=windows[:, :-1]).loss.item()
        return {"val_loss": loss, "val_nats_per_char": loss / chars_per_token}

    def sample(models, step_no: int) -> str:
        return sample_text(models["gpt"], tokenizer, cfg.sample_prompt, cfg.sample_tokens)

    def save(models, folder: Path) -> None:
        save_model(models["gpt"], tokenizer, folder)

    summary = {"gpt_config": dataclasses.asdict(cfg), "train_chars": len(train_text),
               "train_tokens": len(train_ids), "val_chars": len(val_text),
               "val_tokens": len(val_ids), "held_out": val_name,
               "tokens_per_step": cfg.batch_size * block,
               "parameters": sum(p.numel() for p in model.parameters())}
    return TrainTask(models={"gpt": model}, optimizers={"adamw": optimizer},
                     batches=random_batches(train_ids, cfg.batch_size, block, gen), step=step,
                     save=save, schedulers={"lr": scheduler}, sample=sample, evaluate=evaluate,
                     summary=summary)


def tokenizer_dir(ckpt: str | Path) -> Path:
    """Where a run keeps its tokenizer beside its checkpoint (``*-ckpt`` is gitignored)."""
    ckpt = Path(ckpt)
    return ckpt.parent / f"{ckpt.name.removesuffix('-ckpt')}-tokenizer-ckpt"


def tokenizer_for_run(cfg: GPTConfig, loop: LoopConfig, train_text: str):
    """Train the BPE, or on --resume reload the one saved beside the checkpoint."""
    from transformers import PreTrainedTokenizerFast

    from playground.gpt.data import train_tokenizer

    ckpt = loop.resolved_checkpoint_dir()
    keep = tokenizer_dir(ckpt) if ckpt else None
    if loop.resume and keep and (keep / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(keep)
    tokenizer = train_tokenizer(train_text.replace(END_OF_TEXT, ""), cfg.vocab_size,
                                max_length=cfg.block_size)
    if keep:
        tokenizer.save_pretrained(keep)
    return tokenizer


def prepare_run(cfg: GPTConfig, loop: LoopConfig, text: str, *, base_model=None,
                base_tokenizer=None, stop: threading.Event | None = None,
                split_text: Callable[[str], TextSplit] = make_split
                ) -> tuple[TrainTask, LoopConfig]:
    """Split ``text`` (``split_text``: research carves its own validation text), get a
    tokenizer (the base model's when fine-tuning), build the task; returns it with ``loop``
    (its ``max_steps`` filled from the preset when left at 0)."""
    split = split_text(text)
    if cfg.reflow:  # after the split: the novels' titles are found on lines of their own
        split = dataclasses.replace(split, train=reflow(split.train), val=reflow(split.val))
    tokenizer = base_tokenizer or tokenizer_for_run(cfg, loop, split.train)
    task = build_task(cfg, loop, split.train, split.val, tokenizer, model=base_model,
                      val_name=split.val_name, stop=stop)
    if not loop.max_steps:
        loop = dataclasses.replace(loop, max_steps=cfg.steps)
    return task, loop


def run_training(cfg: GPTConfig, loop: LoopConfig, text: str, *, on_log=None, on_sample=None,
                 cancel: threading.Event | None = None,
                 split_text: Callable[[str], TextSplit] = make_split,
                 extend_task: Callable[[TrainTask], None] | None = None) -> TrainResult:
    """Train on ``text``; a spent time budget stops the run and exports its last checkpoint.

    ``split_text`` and ``extend_task`` (which changes the built task in place before the loop
    starts) are for research variants (``research/gpt/train.py``)."""
    cancel = cancel or threading.Event()
    task, loop = prepare_run(cfg, loop, text, stop=cancel, split_text=split_text)
    if extend_task is not None:
        extend_task(task)
    result = train_loop(loop, task, on_log=on_log, on_sample=on_sample, cancel=cancel)
    if cfg.time_budget_s and result.cancelled and loop.out_dir and result.steps:
        result = _export_budget_stop(cfg, loop, task, result)
    return result


def _export_budget_stop(cfg: GPTConfig, loop: LoopConfig, task: TrainTask,
                        result: TrainResult) -> TrainResult:
    """The time budget ran out: the loop checkpointed the last step; export it as the model."""
    summary = {"wall_time_s": round(result.wall_time_s, 1),
               "stopped_by": f"time budget of {cfg.time_budget_s:.0f} s",
               "loop": dataclasses.asdict(loop), "final_metrics": result.last, **task.summary}
    export_from_checkpoint(cfg, loop.resolved_checkpoint_dir(), loop.out_dir, summary)
    return dataclasses.replace(result, cancelled=False, out_dir=Path(loop.out_dir))


def export_from_checkpoint(cfg: GPTConfig, ckpt: str | Path, out: str | Path,
                           summary: dict | None = None) -> int:
    """Write the model folder of a run's checkpoint (its tokenizer sits beside it, see
    ``tokenizer_dir``) with the run's ``metrics.csv``; returns the checkpoint's step."""
    from transformers import PreTrainedTokenizerFast

    ckpt = Path(ckpt)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir(ckpt))
    model = fill_tied_head_on_load(build_model(cfg, tokenizer))

    def save(models, folder: Path) -> None:
        save_model(models["gpt"], tokenizer, folder)
        if (ckpt / "metrics.csv").exists():
            shutil.copyfile(ckpt / "metrics.csv", folder / "metrics.csv")

    # names: checkpoints written before progress.json recorded them hold the one model "gpt"
    return export_checkpoint(ckpt, {"gpt": model}, save, out, names=["gpt"], summary=summary)


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict, *,
              resolve: Callable[[str, dict], GPTConfig] | None = None,
              run: Callable[[GPTConfig, LoopConfig, str], TrainResult] | None = None
              ) -> TrainResult:
    """Entry point of `python -m playground.train gpt ...`; the tiny preset reads
    ``TINY_TEXT`` when no ``--data`` is given. A research variant passes its own ``resolve``
    (preset + overrides -> config) and ``run`` (``run_training``'s first three arguments)."""
    if not data and preset != "tiny":
        raise UserInputError(f"The gpt preset {preset!r} needs --data PATH (a UTF-8 .txt file, "
                             "e.g. austen.txt); only the 'tiny' preset has a built-in sample.")
    data = data or str(TINY_TEXT)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = (resolve or resolve_config)(preset, overrides)
    result = (run or run_training)(cfg, loop, read_text(data))
    if result.out_dir:
        meta = {"preset": preset, "data": Path(data).name, "overrides": overrides}
        (Path(result.out_dir) / "training_preset.json").write_text(json.dumps(meta, indent=1))
    return result
