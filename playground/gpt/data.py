"""Text data for the GPT: read, split (whole held-out novel), train a byte-level BPE, batch.

The Austen file holds five novels one after another, each starting with its title on a line of
its own. Validation holds out one whole novel (Northanger Abbey by default), so the reported
nats/char is measured on prose the model never trained on — not on interleaved chunks of the
books it learned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.core.errors import UserInputError

AUSTEN_TITLES = ("EMMA", "MANSFIELD PARK", "NORTHANGER ABBEY", "PRIDE AND PREJUDICE",
                 "SENSE AND SENSIBILITY")
HELD_OUT_NOVEL = "NORTHANGER ABBEY"
END_OF_TEXT = "<|endoftext|>"


@dataclass
class TextSplit:
    train: str
    val: str
    val_name: str  # what was held out, for the model card


def read_text(path: str | Path) -> str:
    """UTF-8 text with Windows newlines normalised."""
    return Path(path).read_text(encoding="utf-8").replace("\r\n", "\n")


def split_novels(text: str, titles: tuple[str, ...] = AUSTEN_TITLES) -> dict[str, str]:
    """Map each title found on a line of its own to the text from there to the next title."""
    pattern = re.compile(r"^(" + "|".join(re.escape(t) for t in titles) + r")[ \t]*$", re.M)
    starts = [(m.start(), m.group(1)) for m in pattern.finditer(text)]
    novels = {}
    for i, (start, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        novels.setdefault(title, text[start:end])
    return novels


def make_split(text: str, held_out: str = HELD_OUT_NOVEL, val_fraction: float = 0.1) -> TextSplit:
    """Hold out the novel ``held_out`` if the text has the novel titles, else the last
    ``val_fraction`` of the text (cut at a paragraph break where possible)."""
    novels = split_novels(text)
    if held_out in novels and len(novels) > 1:
        train = "".join(body for title, body in novels.items() if title != held_out)
        return TextSplit(train, novels[held_out], f"the whole novel {held_out.title()}")
    cut = int(len(text) * (1 - val_fraction))
    para = text.rfind("\n\n", 0, cut)
    if para > len(text) * 0.5:
        cut = para
    return TextSplit(text[:cut], text[cut:], f"the last {len(text) - cut} characters")


def reflow(text: str) -> str:
    """Remove the printed line wraps: each paragraph becomes one line.

    A paragraph is a run of non-blank lines (each speech of dialogue is its own paragraph in
    these novels). Its lines, indented verse and letters included, are stripped and joined with
    single spaces (runs of spaces and tabs become one space) — except after a line that ends
    in a dash ("--") before an unindented line: the printer broke "word--word" after its dash,
    so no space is added there.
    Paragraphs are joined by exactly one blank line, however many separated them. The result
    has no single "\n", no trailing spaces, and no blank line at either end.
    """
    paragraphs = []
    for block in _BLANK_LINES.split(text):
        joined = ""
        for raw in block.split("\n"):
            glued = not joined or (joined.endswith("--") and not raw[:1].isspace())
            joined += ("" if glued else " ") + raw.strip()
        joined = _SPACES.sub(" ", joined).strip()
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")  # one or more blank (or whitespace-only) lines
_SPACES = re.compile(r"[ \t]+")


def train_tokenizer(text: str, vocab_size: int, max_length: int = 1024):
    """A byte-level BPE trained on ``text``, wrapped as a transformers fast tokenizer.

    Byte-level means every string round-trips exactly (no unknown tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    chunks = (text[i:i + 100_000] for i in range(0, len(text), 100_000))
    core.train_from_iterator(chunks, trainer=trainer, length=len(text) // 100_000 + 1)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=END_OF_TEXT,
                                   eos_token=END_OF_TEXT, unk_token=END_OF_TEXT,
                                   pad_token=END_OF_TEXT, model_max_length=max_length,
                                   clean_up_tokenization_spaces=False)


# The GPT-2 byte-level pre-tokenizer regex,
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# has no look-behind, and only a literal space (never "\n") may lead a non-space pre-token, so a
# pre-token always starts at a "\n" that is directly followed by a non-space character: the
# whitespace before it is matched by \s+(?!\S) (which stops one short of the non-space
# character), and the "\n" alone by \s+. Cutting there gives each piece exactly the pre-tokens
# the whole text has. Cutting *after* that "\n" does not: a piece ending in "\n\n" makes one
# pre-token of it (nothing follows), where the whole text has "\n", "\n".
_SAFE_CUT = re.compile(r"(?=\n[^\s])")


def encode(tokenizer, text: str) -> torch.Tensor:
    """The token ids ``tokenizer(text)["input_ids"]`` gives for the whole of ``text``, as one
    int64 tensor, computed in paragraph-sized pieces (one multi-megabyte call is slow and
    warns about the model length); see ``_SAFE_CUT`` for why the pieces change nothing."""
    ids: list[int] = []
    pieces = [piece for piece in _SAFE_CUT.split(text) if piece]
    batch = 2000
    for i in range(0, len(pieces), batch):
        rows = tokenizer(pieces[i:i + batch], add_special_tokens=False, verbose=False)
        for row in rows["input_ids"]:
            ids.extend(row)
    return torch.tensor(ids, dtype=torch.long)


def random_batches(ids: torch.Tensor, batch_size: int, block: int, generator: torch.Generator):
    """Endless (B, T+1) windows at random offsets of ``ids``, drawn from ``generator``."""
    if len(ids) < block + 2:
        raise UserInputError(f"The text is too short: {len(ids)} tokens, need at least "
                             f"{block + 2} for context {block}.")
    while True:
        starts = torch.randint(0, len(ids) - block - 1, (batch_size,), generator=generator)
        yield torch.stack([ids[s:s + block + 1] for s in starts.tolist()])


def stray_line_breaks(text: str, ignore_tail: bool = True) -> int:
    """How many runs of newlines in ``text`` are not exactly one paragraph break ("\\n\\n"):
    a printed-wrap "\\n", or 3+ newlines (an empty paragraph). With ``ignore_tail`` a run at
    the very end is not counted (a generation cut off mid-break)."""
    runs = list(re.finditer(r"\n+", text))
    if ignore_tail and runs and runs[-1].end() == len(text):
        runs.pop()
    return sum(1 for run in runs if len(run.group()) != 2)
