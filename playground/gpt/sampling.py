"""Sampling inside transformers ``generate`` with our own ``torch.Generator``, recording the odds.

``generate(do_sample=True)`` draws from the process-wide RNG, so two requests (or a training
thread) would disturb each other's seeds. Instead generation runs greedy with one custom logits
processor, ``SeededSampler``: it applies the usual filters (repetition penalty, temperature,
top-k, top-p, min-p — the transformers warpers, in transformers' order), draws the token from the
request's generator, and returns scores where only that token is finite, so greedy picks exactly
it. On the way it records the top-10 before and after the filters, which the tab shows per token
(``pack_odds``: one softmax and one ``topk`` over the vocabulary for every ``ODDS_CHUNK`` steps
at once, no host sync: per step it only keeps the step's two (1, V) distributions).

A branch (``SeededSampler(forced=..., choice=...)``) replays given tokens first and then takes
one of the top-10 alternatives; it still draws at each replayed step, so every later step sees the
random numbers it saw in the original run (branching on the token that was drawn gives back the
original text).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TextIteratorStreamer,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from playground.core.errors import UserInputError

TOP_N = 10  # alternatives recorded per step
HAND_OVER_S = 0.03  # text closer together than this goes to the reader in one piece
ODDS_CHUNK = 16  # steps whose odds are packed together (a few (16, V) tensors held at most)


@dataclass
class SamplingSettings:
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off; keeps tokens with p >= min_p * p(most likely), after temperature

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class NucleusWarper(TopPLogitsWarper):
    """transformers' top-p that sorts only the likeliest ``PARTIAL`` tokens where the nucleus
    lies among them (nearly always: 2 of 600 steps of gpt-austen at temperature 0.8 and top-p
    0.95 needed more), else the whole vocabulary as transformers does. Same kept tokens (up to
    float rounding of the running sums and the order of exactly tied probabilities) for a
    tenth of the time: a sort of gpt-austen's 8,192 logits costs ~0.4 ms, 5 % of a token.

    transformers removes a token when the probabilities up to it in ascending order sum to at
    most 1 - top_p; in descending order that is: the tokens *before* it sum to at least top_p.
    """

    PARTIAL = 512

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != 1 or scores.shape[-1] <= self.PARTIAL:
            return super().__call__(input_ids, scores)
        top, ids = scores.softmax(-1).topk(self.PARTIAL)  # descending
        before = top.cumsum(-1) - top  # mass of the tokens ahead of each
        if before[0, -1] < self.top_p:  # the nucleus reaches past the partial sort
            return super().__call__(input_ids, scores)
        keep = before < self.top_p
        keep[..., :self.min_tokens_to_keep] = True
        kept = ids[keep].unsqueeze(0)
        out = torch.full_like(scores, self.filter_value)
        return out.scatter_(1, kept, scores.gather(1, kept))


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
            filters.append(NucleusWarper(settings.top_p))
        if settings.min_p > 0:
            filters.append(MinPLogitsWarper(settings.min_p))
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

    def alternative_ids(self) -> list[int]:
        """Token ids in the order of the tab's top-10 table: see ``table_rows``."""
        return [key for key, _, _ in table_rows(self.top_before, self.top_after)]


def table_rows(top_before: list[tuple], top_after: list[tuple]) -> list[tuple]:
    """Rows (key, p before, p after) of the top-10 table: the model's own top-10, then the
    tokens the filters lift into the shaped top-10 (p before = None). ``key`` is a token id or
    text; the tab and a branch's ``choice`` number the rows alike."""
    after = dict(top_after)
    rows = [(key, p, after.get(key, 0.0)) for key, p in top_before]
    seen = {key for key, _ in top_before}
    return rows + [(key, None, p) for key, p in top_after if key not in seen]


class SeededSampler(LogitsProcessor):
    """Filter, draw from our generator, force that token (batch size 1).

    ``forced``: token ids to emit first (a branch's prefix); ``choice``: then emit the
    ``choice``-th row (1-based) of that step's top-10 table instead of the drawn token.
    Each step keeps its model scores and sampled distribution until ``ODDS_CHUNK`` steps have
    gathered; they are then packed into small tensors together (``pack_odds``), and read on
    the host once, when ``steps`` is read: no host sync and a handful of tensor ops per chunk
    rather than per token.
    """

    def __init__(self, settings: SamplingSettings, generator: torch.Generator,
                 record: bool = True, forced: list[int] | tuple = (),
                 choice: int | None = None) -> None:
        self.settings, self.generator, self.record = settings, generator, record
        # a plain list: LogitsProcessorList inspects each processor's signature on every call
        self.filters = list(build_filters(settings))
        self.forced, self.choice = list(forced), choice
        self.order_kept = settings.repetition_penalty == 1.0  # the filters keep the order
        self.n_steps = 0
        # (token, drawn, logits (1, V), after (1, V) or None): steps not packed yet
        self._pending: list[tuple[int, int, torch.Tensor, torch.Tensor | None]] = []
        self._packed: list[tuple[list[int], list[int], torch.Tensor]] = []  # tokens, drawn, odds
        self._steps: list[StepRecord] = []

    @property
    def steps(self) -> list[StepRecord]:
        """One record per step so far."""
        self._pack_pending()
        if self._packed:
            values = torch.cat([odds for *_, odds in self._packed]).tolist()
            tokens = [t for chunk, _, _ in self._packed for t in chunk]
            drawn = [d for _, chunk, _ in self._packed for d in chunk]
            self._steps += [unpack_odds(v, t, d) for v, t, d
                            in zip(values, tokens, drawn, strict=True)]
            self._packed = []
        return self._steps

    def _pack_pending(self) -> None:
        if not self._pending:
            return
        tokens, drawn, logits, after = zip(*self._pending, strict=True)
        greedy = after[0] is None
        odds = pack_odds(torch.cat(logits), None if greedy else torch.cat(after),
                         torch.tensor(tokens), self.order_kept)
        self._packed.append((list(tokens), list(drawn), odds))
        self._pending = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        logits = scores.float()  # (1, V); the model's scores, never written to
        shaped = logits
        for shape in self.filters:
            shaped = shape(input_ids, shaped)
        if self.settings.greedy:
            after, drawn = None, int(shaped.argmax(-1))
        else:  # drawn on CPU from the request's generator
            after = torch.softmax(shaped, dim=-1)
            drawn = int(torch.multinomial(after[0].cpu(), 1, generator=self.generator))
        step, self.n_steps = self.n_steps, self.n_steps + 1
        token = self.forced[step] if step < len(self.forced) else drawn
        branching = self.choice is not None and step == len(self.forced)
        if branching:
            odds = pack_odds(logits, after, torch.tensor([token]), self.order_kept)
            token = _chosen(unpack_odds(odds[0].tolist(), token, drawn), self.choice)
        if self.record or branching:
            self._pending.append((token, drawn, logits, after))
            if len(self._pending) >= ODDS_CHUNK:
                self._pack_pending()
        forced = torch.full_like(scores, float("-inf"))
        forced[:, token] = 0.0
        return forced


def pack_odds(logits: torch.Tensor, after: torch.Tensor | None, tokens: torch.Tensor,
              order_kept: bool = False, n: int = TOP_N) -> torch.Tensor:
    """Steps' odds as rows of a tensor (no host sync): each row holds the top-n ids and
    probabilities before the filters and p(token), then, unless greedy (``after`` None), the
    same after the filters.

    ``logits`` (S, V): the model's, one row per step; ``after`` (S, V): the distributions
    sampled from; ``tokens`` (S,): the emitted ids. Returns (S, 2n + 1), or (S, 4n + 2) with
    ``after``. One softmax and one ``topk`` over the vocabulary: when ``order_kept`` (the
    filters only rescale and cut the tail: temperature, top-k, top-p, min-p; no repetition
    penalty), the top-n after are the first of the top-n before, read off ``after`` without a
    second ``topk``.
    """
    before = torch.softmax(logits, -1)
    top_p, top_ids = torch.topk(before, min(n, before.shape[-1]))
    index = tokens.to(logits.device)[:, None]  # (S, 1)
    parts = [top_ids.to(before.dtype), top_p, before.gather(1, index)]
    if after is not None:
        after_ids = top_ids if order_kept else torch.topk(after, top_ids.shape[1]).indices
        parts += [after_ids.to(before.dtype), after.gather(1, after_ids), after.gather(1, index)]
    return torch.cat(parts, 1)


def unpack_odds(values: list[float], token: int, drawn: int) -> StepRecord:
    """The ``StepRecord`` of ``pack_odds``'s numbers (greedy: all mass after on ``drawn``)."""
    greedy = len(values) % 2  # 2k + 1 numbers; 4k + 2 with the odds after the filters
    k = (len(values) - 1) // 2 if greedy else (len(values) - 2) // 4
    top_before = [(int(i), p) for i, p in zip(values[:k], values[k:2 * k], strict=True) if p > 0]
    if greedy:
        return StepRecord(token, values[2 * k], float(token == drawn), top_before,
                          [(drawn, 1.0)])
    rest = values[2 * k + 1:]
    top_after = [(int(i), p) for i, p in zip(rest[:k], rest[k:2 * k], strict=True) if p > 0]
    return StepRecord(token, values[2 * k], rest[2 * k], top_before, top_after)


def _chosen(record: StepRecord, choice: int) -> int:
    ids = record.alternative_ids()
    if not 1 <= choice <= len(ids):
        raise UserInputError(f"Choice must be a row of the top-10 table (1 to {len(ids)}), got "
                             f"{choice}.")
    return ids[choice - 1]


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


class TokenStreamer(TextIteratorStreamer):
    """A ``TextIteratorStreamer`` that hands over every token's text as soon as it decodes
    (the base class waits for a space, delaying the first visible word by a token or more).
    A token ending inside a UTF-8 character waits for the next one.

    Decoding is incremental over a short window (the previous piece's tokens and the new ones,
    the text-generation-inference way): the new text is what the window spells beyond what its
    first part spells, so a token costs two short decodes however long the text is. Where one
    token's text joins faithfully onto the text before it (byte-level BPE; ``_single_texts``
    probes it once per tokenizer), a token that decodes to whole characters is looked up in a
    per-tokenizer cache instead, with no decode at all once seen."""

    start = 0  # first token of the window: where the previous piece's tokens begin
    read = 0  # tokens up to here are handed over
    held = ""  # decoded text not handed over yet (pieces closer than HAND_OVER_S together)
    last = 0.0  # when text was last handed over

    def put(self, value: torch.Tensor) -> None:
        value = value[0] if value.dim() > 1 else value
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(value.tolist())
        piece = self._new_text()
        if piece and not piece.endswith("\ufffd"):
            self.start, self.read = self.read, len(self.token_cache)
            self.held += piece
            now = time.perf_counter()
            if now - self.last >= HAND_OVER_S:
                self.last, text, self.held = now, self.held, ""
                self.on_finalized_text(text)

    def _new_text(self) -> str:
        decode, cache = self.tokenizer.decode, self.token_cache
        if len(cache) - self.read == 1:  # one new token, nothing held back before it
            texts = _single_texts(self.tokenizer, self.decode_kwargs)
            if texts is not None:
                text = texts.get(cache[-1])
                if text is None:
                    text = texts[cache[-1]] = decode(cache[-1:], **self.decode_kwargs)
                if "\ufffd" not in text:
                    return text
        before = decode(cache[self.start:self.read], **self.decode_kwargs)
        text = decode(cache[self.start:], **self.decode_kwargs)
        return text[len(before):] if len(text) > len(before) else ""

    def end(self) -> None:
        piece = self._new_text() if len(self.token_cache) > self.read else ""
        piece, self.held = self.held + piece, ""
        self.token_cache, self.start, self.read, self.last = [], 0, 0, 0.0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(piece, stream_end=True)


_SINGLE_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PROBE = "Hello, world! It's 3 o'clock . Don 't , he said ;\n\nNew  line\tand  end ."


def _single_texts(tokenizer, decode_kwargs: dict) -> dict | None:
    """A cache of one-token texts for ``tokenizer``, or None where single-token texts do not
    join into the decoded text (SentencePiece drops a word's leading space when the word is
    decoded alone; ``clean_up_tokenization_spaces`` rewrites across tokens)."""
    per_kwargs = _SINGLE_TEXTS.get(tokenizer)
    if per_kwargs is None:
        per_kwargs = _SINGLE_TEXTS.setdefault(tokenizer, {})
    key = tuple(sorted(decode_kwargs.items()))
    if key not in per_kwargs:
        ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
        pieces = [tokenizer.decode([i], **decode_kwargs) for i in ids]
        whole = tokenizer.decode(ids, **decode_kwargs)
        per_kwargs[key] = {} if "".join(pieces) == whole else None
    return per_kwargs[key]
