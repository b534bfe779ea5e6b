"""A real CLIP BPE tokenizer, built offline from the vocabulary in the ``open_clip_torch`` wheel.

CLIP's BPE file (``open_clip/bpe_simple_vocab_16e6.txt.gz``) lists 48 894 merges. We keep the
512 byte-level base symbols, the special tokens, and only the merges our captions use (found by
running CLIP's own BPE on every caption word). Because every merge on a kept word's path is kept,
those words tokenize exactly as in the full CLIP vocabulary; any other text still tokenizes, into
smaller pieces. The result is saved as ``vocab.json`` + ``merges.txt`` and loaded with
``CLIPTokenizer.from_pretrained`` like any hub tokenizer.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # as in CLIP's simple_tokenizer
SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def find_bpe_file() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps open_clip_torch (it ships CLIP's BPE file)")
    return Path(list(spec.submodule_search_locations)[0]) / BPE_FILE


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


@lru_cache(maxsize=2)
def read_merges(path: Path | None = None) -> list[tuple[str, str]]:
    lines = gzip.open(path or find_bpe_file()).read().decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1:N_MERGES + 1]]


def bpe_path(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies to ``word`` (byte-level encoded), in order."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    used = []
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:], strict=False)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return used


def restricted_vocab(words: list[str], merges: list[tuple[str, str]] | None = None
                     ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) holding the base symbols, the specials and the merges ``words`` need."""
    merges = merges if merges is not None else read_merges()
    ranks = {m: i for i, m in enumerate(merges)}
    byte_map = bytes_to_unicode()
    needed = set()
    for word in words:
        encoded = "".join(byte_map[b] for b in word.lower().encode("utf-8"))
        needed.update(bpe_path(encoded, ranks))
    kept = [m for m in merges if m in needed]  # CLIP's rank order
    base = list(byte_map.values())
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in kept] + list(SPECIALS)
    return {t: i for i, t in enumerate(tokens)}, kept


def build_tokenizer(words: list[str], max_length: int):
    """A ``CLIPTokenizer`` over the restricted CLIP vocabulary (``model_max_length`` tokens)."""
    from transformers import CLIPTokenizer

    vocab, merges = restricted_vocab(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
