"""Text generation for the tab, the API, the tests and the benchmark (no gradio here).

``stream_generate`` runs ``model.generate`` in a thread with a ``TokenStreamer`` and yields the
text as it grows (``Partial``); the last item is a ``Generation``: every token with its
probability and the top-10 alternatives before/after the sampling filters (see ``sampling.py``),
the prompt's perplexity (read from the forward pass that starts the generation, so it costs about
one unembedding of the prompt) and a reproducibility record. A request resolves its registry
entry once and passes it down. ``branch.py`` reruns a generation with one token swapped for an
alternative; ``inside.py`` looks inside the model.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteriaList,
)

from playground.core import registry, repro
from playground.core.device import get_device
from playground.core.errors import UserInputError, check_range
from playground.core.seeding import make_generator
from playground.gpt import FAMILY
from playground.gpt.evaluate import PromptScore, prefill_scoring, score_prompt
from playground.gpt.sampling import SamplingSettings, SeededSampler, StopOnText, TokenStreamer

MAX_PROMPT_CHARS = 8000
MAX_NEW_TOKENS = 1000
MAX_STOP_CHARS = 100
PROB_BINS = ((0.5, "p ≥ 0.5"), (0.1, "0.1 – 0.5"), (0.01, "0.01 – 0.1"), (0.0, "< 0.01"))


@dataclass
class TokenInfo:
    """One generated token: its text, its probability under the model (``p``) and after the
    sampling filters (``p_sampled``), and the top alternatives before/after the filters (with
    their token ids, in the same order)."""

    token: str
    id: int
    p: float
    p_sampled: float
    top_before: list[tuple[str, float]]
    top_after: list[tuple[str, float]]
    ids_before: list[int] = field(default_factory=list)
    ids_after: list[int] = field(default_factory=list)


@dataclass
class Partial:
    """The text so far, while it streams."""

    text: str
    done: ClassVar[bool] = False


@dataclass
class Generation:
    """The finished continuation (the last item of ``stream_generate``)."""

    text: str
    tokens: list[TokenInfo]
    prompt: PromptScore
    seed: int
    record: dict  # playground.core.repro record: model, source, parameters, seed, versions
    notes: list[str] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # as the model read it (chat template)
    prompt_tokens: list[str] = field(default_factory=list)  # their texts, special tokens shown
    done: ClassVar[bool] = True

    def details(self) -> dict:
        """The plain JSON the tab and the API show (text, tokens, prompt, notes, seed, record,
        and the prompt's token ids/texts, which the inside views and branches read)."""
        return {"text": self.text, "tokens": [dataclasses.asdict(t) for t in self.tokens],
                "prompt": dataclasses.asdict(self.prompt), "notes": list(self.notes),
                "seed": self.seed, "record": self.record, "prompt_ids": list(self.prompt_ids),
                "prompt_tokens": list(self.prompt_tokens)}


@dataclass
class Request:
    """A checked generation request."""

    prompt: str
    max_new_tokens: int
    sampling: SamplingSettings
    stop: str


@dataclass
class EncodedPrompt:
    ids: torch.Tensor  # (1, T), fits the context with max_new_tokens after it
    max_new_tokens: int  # capped by the context
    notes: list[str]
    plain: bool = True  # ids are the prompt's own tokens (no chat template around them)


@dataclass
class LanguageModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str
    chat: bool  # use the tokenizer's chat template for the prompt
    revision: str | None = None  # the hub commit sha it was loaded at (None: a local folder)

    @property
    def context(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings",
                                                                  2048))


def _from_pretrained(source: str, gguf_file: str | None = None):
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    device = get_device()
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs).to(device).eval()
    return model, tokenizer


def load_language_model(name: str | registry.ModelEntry) -> LanguageModel:
    """A registry name (``gpt-austen``, a session-trained run, SmolLM2), a hub id, or the
    entry a request already resolved.

    The registry loads hub models in a thread that runs in a copy of the caller's context, so
    a tab's ``gr.Progress(track_tqdm=True)`` sees huggingface_hub's download bars.
    """
    entry = name if isinstance(name, registry.ModelEntry) else registry.resolve(FAMILY, name)
    gguf = entry.extra.get("gguf_file")
    model, tokenizer = registry.load_model(FAMILY, entry, lambda src: _from_pretrained(src, gguf))
    chat = bool(entry.extra.get("chat", getattr(tokenizer, "chat_template", None)))
    return LanguageModel(model, tokenizer, entry.name, entry.source, chat,
                         registry.revision(entry))


def check_settings(prompt, max_new_tokens, temperature, top_k, top_p,
                   repetition_penalty, stop, min_p=0.0) -> Request:
    """Validate the request; every message says what to change."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserInputError("Enter a prompt: the model continues the text you give it.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserInputError(f"The prompt is too long ({len(prompt):,} characters); the limit is "
                             f"{MAX_PROMPT_CHARS:,}. Shorten it.")
    new = check_range("Max new tokens", max_new_tokens, 1, MAX_NEW_TOKENS, integer=True)
    temp = check_range("Temperature", temperature, 0.0, 5.0)
    k = check_range("Top-k", top_k, 0, 100_000, integer=True)
    p = check_range("Top-p", top_p, 0.0, 1.0)
    if p == 0:
        raise UserInputError("Top-p must be above 0 (it keeps the smallest set of tokens whose "
                             "probabilities add up to p; 1 turns it off).")
    rep = check_range("Repetition penalty", repetition_penalty, 1.0, 3.0)
    min_p = check_range("Min-p", min_p, 0.0, 1.0)
    stop = stop or ""
    if not isinstance(stop, str) or len(stop) > MAX_STOP_CHARS:
        raise UserInputError(f"Stop text must be at most {MAX_STOP_CHARS} characters.")
    stop = stop.encode().decode("unicode_escape") if "\\n" in stop else stop
    return Request(prompt, new, SamplingSettings(temp, k, p, rep, min_p), stop)


def encode_prompt(lm: LanguageModel, prompt: str, max_new_tokens: int,
                  use_chat: bool) -> EncodedPrompt:
    """Prompt ids that fit the context with ``max_new_tokens`` after them, and notes."""
    notes = []
    tok = lm.tokenizer
    plain = not (use_chat and lm.chat and getattr(tok, "chat_template", None))
    if not plain:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:
        ids = tok(prompt, return_tensors="pt", verbose=False)["input_ids"]
    room = lm.context - ids.shape[1]
    if max_new_tokens > lm.context - 16:
        max_new_tokens = lm.context - 16
        notes.append(f"max new tokens capped at {max_new_tokens} by the model's context of "
                     f"{lm.context} tokens")
    if room < max_new_tokens:
        keep = lm.context - max_new_tokens
        notes.append(f"prompt cut to its last {keep} tokens to fit the context")
        ids = ids[:, -keep:]
    return EncodedPrompt(ids, max_new_tokens, notes, plain)


def prompt_perplexity(lm: LanguageModel, prompt: str) -> PromptScore:
    """Perplexity (per token) and nats/char of ``prompt`` itself under the model: the tokens
    after the first, each given the ones before it (``score_prompt``), within the context."""
    ids = lm.tokenizer(prompt, return_tensors="pt", verbose=False)["input_ids"]
    ids = ids[:, -lm.context:]
    if ids.shape[1] < 2:
        return PromptScore(None, None, 0)
    device = next(lm.model.parameters()).device
    with torch.no_grad():
        logits = lm.model(input_ids=ids[:, :-1].to(device), use_cache=False).logits[0]
    return score_prompt(lm.tokenizer, ids[0], logits)


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds (incremental decode: joins back to the full text even when one
    token holds only part of a UTF-8 character)."""
    pieces, previous = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[:i + 1], skip_special_tokens=True)
        pieces.append(text[len(previous):])
        previous = text
    return pieces


_TOKEN_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_text(tokenizer, token_id: int) -> str:
    """``tokenizer.decode([token_id])``, cached per tokenizer: a generation names about 20
    alternatives per token, mostly the same few hundred tokens."""
    texts = _TOKEN_TEXTS.get(tokenizer)
    if texts is None:
        texts = _TOKEN_TEXTS.setdefault(tokenizer, {})
    text = texts.get(token_id)
    if text is None:
        text = texts[token_id] = tokenizer.decode([token_id])
    return text


def probability_label(p: float) -> str:
    return next(label for low, label in PROB_BINS if p >= low)


def describe_tokens(tokenizer, steps, cut: int | None) -> list[TokenInfo]:
    """One ``TokenInfo`` per generated token (up to the stop text at ``cut``), decoded."""
    ids = [s.token_id for s in steps]
    pieces = token_pieces(tokenizer, ids)
    out, pos = [], 0
    for piece, s in zip(pieces, steps, strict=True):
        if cut is not None and pos >= cut:
            break
        shown = piece if cut is None else piece[:cut - pos]
        pos += len(piece)
        out.append(TokenInfo(shown, s.token_id, s.p_before, s.p_after,
                             [(token_text(tokenizer, i), p) for i, p in s.top_before],
                             [(token_text(tokenizer, i), p) for i, p in s.top_after],
                             [i for i, _ in s.top_before], [i for i, _ in s.top_after]))
    return out


def stream_generate(name: str | registry.ModelEntry, prompt: str, max_new_tokens=80,
                    temperature=0.8, top_k=0, top_p=0.95, repetition_penalty=1.0, stop="",
                    seed: int = 0, use_chat: bool = True, cancel: threading.Event | None = None,
                    min_new_tokens: int = 0, min_p: float = 0.0) -> Iterator[Partial | Generation]:
    """Yield a ``Partial`` as the text streams in, then the ``Generation``."""
    request = check_settings(prompt, max_new_tokens, temperature, top_k, top_p,
                             repetition_penalty, stop, min_p)
    entry = name if isinstance(name, registry.ModelEntry) else registry.resolve(FAMILY, name)
    sampler = SeededSampler(request.sampling, make_generator(seed))
    yield from run_request(entry, request, sampler, seed, use_chat, cancel, min_new_tokens)


def run_request(entry: registry.ModelEntry, request: Request, sampler: SeededSampler, seed: int,
                use_chat: bool, cancel: threading.Event | None = None, min_new_tokens: int = 0,
                branch: dict | None = None) -> Iterator[Partial | Generation]:
    """Stream a checked request through ``sampler`` (which may replay a branch's prefix), then
    yield its ``Generation``; ``branch`` goes into the record's parameters."""
    lm = load_language_model(entry)
    encoded = encode_prompt(lm, request.prompt, request.max_new_tokens, use_chat)
    cancel = cancel or threading.Event()
    streamer = TokenStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True,
                             timeout=600)
    thread, failure, scored = _start_generation(lm, encoded, sampler, streamer, request.stop,
                                                cancel, min_new_tokens)
    text, stop, score = "", request.stop, None
    try:
        for piece in streamer:
            text += piece
            yield Partial(text.split(stop)[0] if stop else text)
            if score is None and not encoded.plain:  # a chat template wraps the prompt: score
                score = prompt_perplexity(lm, request.prompt)  # it here while the model writes
    finally:
        cancel.set()  # the consumer went away (or we finished): stop the thread
        thread.join()
    if failure:
        raise failure[0]
    score = scored[0] if scored else score
    settings = request.sampling
    params = dict(prompt=request.prompt, max_new_tokens=encoded.max_new_tokens,
                  temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                  min_p=settings.min_p, repetition_penalty=settings.repetition_penalty,
                  stop=stop, chat_template=bool(use_chat and lm.chat))
    if branch is not None:
        params["branch"] = branch
    result = finish(lm, request.prompt, sampler, stop, encoded.notes, seed, params, score)
    result.prompt_ids = encoded.ids[0].tolist()
    result.prompt_tokens = [token_text(lm.tokenizer, i) for i in result.prompt_ids]
    yield result


def _start_generation(lm: LanguageModel, encoded: EncodedPrompt, sampler: SeededSampler,
                      streamer: TokenStreamer, stop: str, cancel: threading.Event,
                      min_new_tokens: int
                      ) -> tuple[threading.Thread, list[BaseException], list[PromptScore]]:
    """Run ``model.generate`` in a thread feeding ``streamer``; an error lands in the first
    list. A plain prompt of two tokens or more is scored from ``generate``'s first forward
    pass (``PrefillScorer``); its score lands in the second list."""
    tok, ids = lm.tokenizer, encoded.ids
    device = next(lm.model.parameters()).device
    config = GenerationConfig(max_new_tokens=encoded.max_new_tokens,
                              min_new_tokens=min_new_tokens or None, do_sample=False,
                              eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id or tok.eos_token_id)
    failure: list[BaseException] = []
    scored: list[PromptScore] = []

    def run() -> None:
        scored_here = encoded.plain and ids.shape[1] >= 2
        scorer = prefill_scoring(lm.model, tok, ids) if scored_here else None
        hook = scorer and lm.model.get_output_embeddings().register_forward_hook(scorer)
        try:
            lm.model.generate(input_ids=ids.to(device),
                              attention_mask=torch.ones_like(ids).to(device),
                              generation_config=config, streamer=streamer,
                              logits_processor=LogitsProcessorList([sampler]),
                              stopping_criteria=StoppingCriteriaList(
                                  [StopOnText(tok, ids.shape[1], stop, cancel)]),
                              **({"logits_to_keep": 0} if scorer else {}))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
            streamer.end()
        finally:
            if hook:
                hook.remove()
        if scorer and scorer.score is not None:
            scored.append(scorer.score)

    thread = threading.Thread(target=run, daemon=True, name="gpt-generate")
    thread.start()
    return thread, failure, scored


def finish(lm: LanguageModel, prompt: str, sampler: SeededSampler, stop: str, notes: list[str],
           seed: int, params: dict, score: PromptScore | None = None) -> Generation:
    """The ``Generation`` of a finished run (``score``: the prompt's, if already computed)."""
    ids = [s.token_id for s in sampler.steps]
    if ids and ids[-1] == lm.tokenizer.eos_token_id:
        notes = [*notes, "the model ended the text (it chose the end-of-text token)"]
    text = lm.tokenizer.decode(ids, skip_special_tokens=True)
    cut = text.find(stop) if stop and stop in text else None
    text = text[:cut] if cut is not None else text
    return Generation(text, describe_tokens(lm.tokenizer, sampler.steps, cut),
                      score or prompt_perplexity(lm, prompt), seed,
                      repro.make_record(FAMILY, lm.name, lm.source, params, seed,
                                        revision=lm.revision), notes)


def generate(name: str | registry.ModelEntry, prompt: str, **kwargs) -> Generation:
    """The whole result of ``stream_generate`` at once."""
    *_, result = stream_generate(name, prompt, **kwargs)
    return result
