"""A generation's details JSON read back: the branch and the inside views take it as input.

``Generation.details()`` (the JSON that ``gpt_generate`` returns) names the model, the prompt,
the settings and the seed in its record, and every token id; that is all a later view needs.
It may come from an API client, so every field is checked here and a bad one is a
``UserInputError`` that says what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from playground.core.errors import UserInputError

SETTINGS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
            "stop")
MAX_IDS = 10_000  # far above any context this tab serves
NO_DETAILS = ("Generate a text first: this view reads a generation's details (the JSON that "
              "gpt_generate or gpt_continue returns).")


@dataclass
class GenerationDetails:
    model: str
    seed: int
    settings: dict  # keyword arguments of inference.check_settings
    use_chat: bool  # the chat template was applied to the prompt
    prompt_ids: list[int] | None  # None: re-encode the prompt
    token_ids: list[int]  # the generated tokens
    token_texts: list[str]


def _ids(values, what: str) -> list[int]:
    if not isinstance(values, list) or len(values) > MAX_IDS:
        raise UserInputError(f"The details' {what} must be a list of token ids.")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise UserInputError(f"The details' {what} must be whole numbers ≥ 0 (token ids).")
    return list(values)


def read_details(details) -> GenerationDetails:
    """Check and unpack ``details`` (a dict, or its JSON text)."""
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            raise UserInputError(NO_DETAILS) from None
    if not isinstance(details, dict) or not details.get("tokens"):
        raise UserInputError(NO_DETAILS)
    record = details.get("record")
    params = record.get("params") if isinstance(record, dict) else None
    if not isinstance(params, dict) or not isinstance(record.get("model"), str):
        raise UserInputError(NO_DETAILS + " Its record (model, params) is missing.")
    missing = [k for k in SETTINGS if k not in params]
    if missing:
        raise UserInputError(f"The details' record lacks {', '.join(missing)}: pass the JSON "
                             "of a generation made by this version of the app.")
    tokens = details["tokens"]
    if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
        raise UserInputError(NO_DETAILS)
    token_ids = _ids([t.get("id") for t in tokens], "token ids")
    seed = record.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserInputError("The details' record has no seed.")
    settings = {k: params[k] for k in SETTINGS} | {"min_p": params.get("min_p", 0.0)}
    prompt_ids = details.get("prompt_ids")
    return GenerationDetails(record["model"], seed, settings, bool(params.get("chat_template")),
                             _ids(prompt_ids, "prompt ids") if prompt_ids else None,
                             token_ids, [str(t.get("token", "")) for t in tokens])
