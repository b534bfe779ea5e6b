"""Continue from an alternative: rerun a generation with the token at one position swapped for
one of the top-10 alternatives there (no gradio here).

The text up to that position plus the chosen token becomes the model's context: the branch
replays the generation's own tokens before the position (token by token, so the chosen token
is exactly that token, not a re-tokenised text), emits the chosen alternative, and samples on
with the same seed and settings. Replayed steps still draw from the seed's generator, so every
later step sees the random numbers of the original run: choosing the token that was drawn gives
the original text back. The record's ``params.branch`` says where it branched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from playground.core import registry
from playground.core.errors import check_range
from playground.core.seeding import make_generator
from playground.gpt import FAMILY
from playground.gpt.details import read_details
from playground.gpt.inference import (
    Generation,
    Partial,
    check_settings,
    load_language_model,
    run_request,
    token_text,
)
from playground.gpt.sampling import TOP_N, SeededSampler

MAX_CHOICE = 2 * TOP_N  # the model's top-10 plus up to ten tokens the filters lift


def stream_continue(details, position, choice,
                    cancel: threading.Event | None = None) -> Iterator[Partial | Generation]:
    """Branch the generation in ``details`` at generated token ``position`` (1-based) to the
    ``choice``-th row (1-based) of that token's top-10 table; yields like ``stream_generate``.

    The result holds the whole text after the prompt: the replayed tokens, the chosen one (at
    ``position``), then the new continuation.
    """
    source = read_details(details)
    position = check_range("Position", position, 1, len(source.token_ids), integer=True)
    choice = check_range("Choice", choice, 1, MAX_CHOICE, integer=True)
    request = check_settings(**source.settings)
    entry = registry.resolve(FAMILY, source.model)
    prefix = source.token_ids[:position - 1]
    sampler = SeededSampler(request.sampling, make_generator(source.seed), forced=prefix,
                            choice=choice)
    replaced = source.token_ids[position - 1]
    branch = {"position": position, "choice": choice, "prefix_ids": prefix,
              "replaced": source.token_texts[position - 1], "replaced_id": replaced}
    for item in run_request(entry, request, sampler, source.seed, source.use_chat, cancel,
                            branch=branch):
        if item.done:
            chosen = sampler.steps[position - 1].token_id
            tokenizer = load_language_model(entry).tokenizer  # cached: loaded by run_request
            branch.update(token=token_text(tokenizer, chosen), token_id=chosen)
            item.notes.append(f"branched at token {position}: {branch['token']!r} instead of "
                              f"{branch['replaced']!r}")
        yield item


def generate_continue(details, position, choice) -> Generation:
    """The whole result of ``stream_continue`` at once."""
    *_, result = stream_continue(details, position, choice)
    return result
