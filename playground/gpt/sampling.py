"""Sampling inside transformers ``generate`` with our own ``torch.Generator``, recording the odds.

``generate(do_sample=True)`` draws from the process-wide RNG, so two requests (or a training
thread) would disturb each other's seeds. Instead generation runs greedy with one custom logits
processor, ``SeededSampler``: it applies the usual filters (repetition penalty, temperature,
top-k, top-p — the transformers warpers), draws the token from the request's generator, and
returns scores where only that token is finite, so greedy picks exactly it. On the way it records
the distribution before and after the filters, which the tab shows per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

TOP_N = 10  # alternatives recorded per step


@dataclass
class SamplingSettings:
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def build_filters(settings: SamplingSettings):
    """The transformers processors/warpers that shape the distribution, in the usual order."""
    filters = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        filters.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if not settings.greedy:
        if settings.temperature != 1.0:
            filters.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k:
            filters.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            filters.append(TopPLogitsWarper(settings.top_p))
    return filters


def distributions(input_ids: torch.Tensor, logits: torch.Tensor, settings: SamplingSettings,
                  filters=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Full next-token probabilities (1, V) before and after the filters.

    Before = softmax of the model's logits (temperature 1). After = what is sampled from; for
    greedy decoding it is all mass on the arg-max (after the repetition penalty).
    """
    logits = logits.float()
    before = torch.softmax(logits, dim=-1)
    shaped = (filters if filters is not None else build_filters(settings))(input_ids, logits)
    if settings.greedy:
        after = torch.zeros_like(before)
        after.scatter_(-1, shaped.argmax(-1, keepdim=True), 1.0)
    else:
        after = torch.softmax(shaped, dim=-1)
    return before, after


@dataclass
class StepRecord:
    token_id: int
    p_before: float
    p_after: float
    top_before: list[tuple[int, float]]
    top_after: list[tuple[int, float]]


def _top(probs: torch.Tensor, n: int) -> list[tuple[int, float]]:
    values, ids = torch.topk(probs[0], min(n, probs.shape[-1]))
    return [(i, v) for i, v in zip(ids.tolist(), values.tolist(), strict=True) if v > 0]


class SeededSampler(LogitsProcessor):
    """Filter, draw from our generator, force that token (batch size 1)."""

    def __init__(self, settings: SamplingSettings, generator: torch.Generator,
                 record: bool = True) -> None:
        self.settings, self.generator, self.record = settings, generator, record
        self.filters = build_filters(settings)
        self.steps: list[StepRecord] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        before, after = distributions(input_ids, scores, self.settings, self.filters)
        if self.settings.greedy:
            token = int(after.argmax(-1))
        else:  # drawn on CPU from the request's generator
            token = int(torch.multinomial(after[0].cpu(), 1, generator=self.generator))
        if self.record:
            p_before, p_after = torch.stack([before[0, token], after[0, token]]).tolist()
            self.steps.append(StepRecord(token, p_before, p_after, _top(before, TOP_N),
                                         _top(after, TOP_N)))
        forced = torch.full_like(scores, float("-inf"))
        forced[:, token] = 0.0
        return forced


class StopOnText(StoppingCriteria):
    """Stop once the generated text contains ``stop`` (or when ``cancel`` is set)."""

    def __init__(self, tokenizer, prompt_len: int, stop: str, cancel) -> None:
        self.tokenizer, self.prompt_len = tokenizer, prompt_len
        self.stop, self.cancel = stop, cancel

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = self.cancel.is_set()
        if self.stop and not done:
            tail = input_ids[0, self.prompt_len:][-64:].tolist()  # the stop text is short
            done = self.stop in self.tokenizer.decode(tail, skip_special_tokens=True)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)
