"""The GPT trainer with a validation split carved from the training novels, and an EMA.

`python -m research.gpt.train --preset austen-prose-val-ema --data
/work/shared/data/text/austen.txt --out runs/gpt-prose-val-ema --checkpoint-every 100
--snapshot-every 100` takes the flags of `python -m playground.train gpt`; every product preset
is here too, so a switch below can be tried on top of any of them (``--set val_split=0.05``).

Why: issue 27 is judged on the whole held-out novel (Northanger Abbey), and research/gpt-prose.md
scores that novel only ONCE, on the final candidate. The product trainer's periodic evaluation
scores the held-out novel, so a run's choices (when to stop, whether to average the weights)
made on those figures would be fitted to it. The switches (fields of ``ResearchGPTConfig`` on
top of the product's ``GPTConfig``) move those choices onto training-novel text:
- ``val_split`` > 0: after the product's split (the held-out novel out), the last ``val_split``
  of each training novel (from the paragraph break at or before that point) is carved out of
  the training text; the tokenizer and the model train on the rest, the periodic evaluation
  scores the carved text, and the held-out novel is neither trained on nor evaluated
  (``training_summary.json``: ``held_out`` says what the val figures are on,
  ``unused_novel`` what is kept back). The text is cut before ``reflow``, at paragraph breaks,
  so the pieces hold the same paragraphs as cutting the reflowed text would;
- ``ema_decay`` > 0: an EMA of the GPT's weights (``core.ema.update_ema``) after every step,
  a plain copy until step ``ema_start``; it is the model ``gpt_ema`` of the task, so checkpoints
  keep it and ``--resume`` continues it. The evaluation logs ``val_nats_per_char`` (raw) and
  ``ema_val_nats_per_char``; the model folder, its snapshots and the samples are the EMA.
With both off a run is the product's (the same weights).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from playground.core.config import resolve_preset
from playground.core.ema import update_ema
from playground.core.errors import UserInputError, check_range
from playground.core.training import (
    LoopConfig,
    StepContext,
    TrainResult,
    TrainTask,
)
from playground.gpt import train as T
from playground.gpt.data import AUSTEN_TITLES, HELD_OUT_NOVEL, TextSplit, make_split, split_novels
from research.configs import with_switches


@dataclass
class ResearchGPTConfig(T.GPTConfig):
    val_split: float = 0.0  # > 0: validate on this last share of each training novel
    ema_decay: float = 0.0  # > 0: keep (and save) an EMA of the weights
    ema_start: int = 0  # the EMA copies the weights up to this step, then averages


def _research(cfg: T.GPTConfig, **switches) -> ResearchGPTConfig:
    return with_switches(ResearchGPTConfig, cfg, **switches)


PRESETS: dict[str, ResearchGPTConfig] = {
    **{name: _research(cfg) for name, cfg in T.PRESETS.items()},
    # austen-prose, its choices made on the last 5% of each training novel
    "austen-prose-val": _research(T.PRESETS["austen-prose"], val_split=0.05),
    # the same with an EMA of the weights (decay 0.999: a half-life of ~690 steps); from step
    # 0, so the initial weights still hold 0.999^2400 = 9% of it at the end (--set ema_start)
    "austen-prose-val-ema": _research(T.PRESETS["austen-prose"], val_split=0.05,
                                      ema_decay=0.999),
}
DEFAULT_PRESET = "austen-prose-val"


def _check_below(name: str, value, low: float, high: float) -> float:
    """``value`` as a float within [low, high), else a UserInputError that says so."""
    number = check_range(name, value, low, high)
    if number >= high:
        raise UserInputError(f"{name} must be at least {low} and below {high}, got {value!r}.")
    return float(number)


def resolve_config(preset: str, overrides: dict | None = None) -> ResearchGPTConfig:
    """The product's checks, on a research preset, and those of the switches."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="GPT research")
    T.resolve_config("tiny", {f.name: getattr(cfg, f.name)
                              for f in dataclasses.fields(T.GPTConfig)})
    cfg = dataclasses.replace(cfg, val_split=_check_below("val_split", cfg.val_split, 0, 0.5),
                              ema_decay=_check_below("ema_decay", cfg.ema_decay, 0, 1),
                              ema_start=check_range("ema_start", cfg.ema_start, 0, 10**9,
                                                    integer=True))
    if cfg.ema_decay and cfg.time_budget_s:
        raise UserInputError("time_budget_s with ema_decay: a budget stop exports the raw "
                             "weights of the checkpoint, not the EMA; give steps instead.")
    return cfg


def paragraph_cut(body: str, fraction: float) -> int:
    """Where the last ``fraction`` of ``body`` starts: just after the last paragraph break
    ("\\n\\n") that ends at or before ``len(body) * (1 - fraction)``; -1 if there is none."""
    point = int(len(body) * (1 - fraction))
    brk = body.rfind("\n\n", 0, point)
    return brk + 2 if brk >= 0 else -1


def carve_validation(text: str, fraction: float, held_out: str = HELD_OUT_NOVEL) -> TextSplit:
    """``make_split``'s training text (every novel but ``held_out``) cut in two: ``train``, the
    start of each training novel, and ``val``, the last ``fraction`` of each (from a paragraph
    break), both in the novels' order. The novel ``held_out`` is in neither."""
    novels = split_novels(text)
    if held_out not in novels or len(novels) < 2:
        titles = ", ".join(AUSTEN_TITLES)
        raise UserInputError(f"val_split carves the end of each training novel: the text needs "
                             f"the novels' titles on lines of their own ({titles}), {held_out} "
                             "and at least one other; set val_split=0 for this text.")
    heads, tails = [], []
    for title, body in novels.items():
        if title == held_out:
            continue
        cut = paragraph_cut(body, fraction)
        if cut < 0:
            raise UserInputError(f"{title.title()} has no paragraph break before its last "
                                 f"{fraction * 100:g}%; val_split needs one.")
        heads.append(body[:cut])
        tails.append(body[cut:])
    names = ", ".join(title.title() for title in novels if title != held_out)
    return TextSplit("".join(heads), "".join(tails),
                     f"the last {fraction * 100:g}% of each training novel ({names}), "
                     "from a paragraph break")


def split_for(cfg: ResearchGPTConfig) -> Callable[[str], TextSplit]:
    """The product's split, or with ``val_split`` the carved one."""
    return partial(carve_validation, fraction=cfg.val_split) if cfg.val_split else make_split


def add_ema(cfg: ResearchGPTConfig, task: TrainTask) -> None:
    """Add ``gpt_ema`` to ``task``: updated after every step, evaluated beside the raw model
    (``ema_`` keys), and the model that is saved and sampled."""
    task.models["gpt_ema"] = copy.deepcopy(task.models["gpt"]).requires_grad_(False)
    product_step, product_evaluate = task.step, task.evaluate
    product_save, product_sample = task.save, task.sample

    def step(ctx: StepContext, batch) -> dict[str, float]:
        logs = product_step(ctx, batch)
        acc = ctx.accelerator
        decay = cfg.ema_decay if ctx.step > cfg.ema_start else 0.0
        update_ema(acc.unwrap_model(ctx.models["gpt_ema"]), acc.unwrap_model(ctx.models["gpt"]),
                   decay)
        return logs

    def evaluate(models, step_no: int) -> dict[str, float]:
        row = product_evaluate(models, step_no)
        if row:
            ema = product_evaluate({"gpt": models["gpt_ema"]}, step_no)
            row.update({f"ema_{key}": value for key, value in ema.items()})
        return row

    def on_ema(product_fn):
        return lambda models, arg: product_fn({"gpt": models["gpt_ema"]}, arg)

    task.step, task.evaluate = step, evaluate
    task.save, task.sample = on_ema(product_save), on_ema(product_sample)
    task.summary["saved_weights"] = (f"EMA of the weights (decay {cfg.ema_decay}, a copy up "
                                     f"to step {cfg.ema_start})")


def run_training(cfg: ResearchGPTConfig, loop: LoopConfig, text: str, *, on_log=None,
                 on_sample=None, cancel: threading.Event | None = None) -> TrainResult:
    """The product's ``run_training`` with the switches (see the module docstring)."""
    def extend(task: TrainTask) -> None:
        if cfg.val_split:
            task.summary["unused_novel"] = (f"the whole novel {HELD_OUT_NOVEL.title()}: "
                                            "neither trained on nor evaluated")
        if cfg.ema_decay:
            add_ema(cfg, task)

    return T.run_training(cfg, loop, text, on_log=on_log, on_sample=on_sample, cancel=cancel,
                          split_text=split_for(cfg), extend_task=extend)


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """The product's ``train_cli`` with the research presets and switches."""
    return T.train_cli(preset, loop, data, overrides, resolve=resolve_config, run=run_training)


def main(argv: list[str] | None = None) -> TrainResult:
    """The flags of `python -m playground.train gpt`, with the research presets."""
    import sys

    from playground.train import main as train_main

    return train_main(["gpt", *(sys.argv[1:] if argv is None else argv)],
                      module=sys.modules[__name__])


if __name__ == "__main__":
    main()
