"""Issue 27 probe: a model's held-out score with the ids training used before the fix
(paragraph pieces cut after "\\n\\n") and with the ids of the whole text
(``tokenizer(text)["input_ids"]``, what ``data.encode`` now gives).

`python research/gpt_tokenizer_consistency.py --model weights/gpt-austen --data austen.txt`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import torch

from playground.gpt.data import encode, make_split, read_text
from playground.gpt.evaluate import load_local, score_ids


def paragraph_piece_ids(tokenizer, text: str) -> torch.Tensor:
    """The ids of the old ``data.encode``: pieces cut after each "\\n\\n", encoded apart."""
    pieces = re.split(r"(?<=\n\n)", text)
    rows = tokenizer(pieces, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor([i for row in rows for i in row], dtype=torch.long)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-chars", type=int, default=30_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tok = load_local(args.model)
    text = make_split(read_text(args.data)).val[:args.max_chars]
    whole = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
    ours = encode(tok, text)
    assert ours.tolist() == whole
    result = {}
    for name, ids in (("paragraph_pieces", paragraph_piece_ids(tok, text)), ("whole_text", ours)):
        score = score_ids(model, ids, len(text), tok.bos_token_id)
        result[name] = dataclasses.asdict(score)
    print(json.dumps({"chars": len(text), **result}, indent=1))


if __name__ == "__main__":
    main()
