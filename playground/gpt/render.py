"""The attention picture, drawn with PIL and numpy (matplotlib is not a dependency).

A grid: one row per layer, one column per head; each cell is a strip over the tokens attended
to (oldest left, the clicked token right), darker where the head attends more; a gap marks
tokens left out (grey). The tokens are written above every column, rotated; where the strips are too
narrow for a label, every few tokens are written (always the clicked one).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from playground.core.fonts import label_font

MAX_WIDTH = 1600  # px the grid aims for; cells shrink to fit, down to MIN_KEY_PX per token
MIN_KEY_PX, MAX_KEY_PX = 4, 40
MIN_CELL_PX = 110
ROW_PX = 20
HEAD_GAP, ROW_GAP = 14, 3
LEFT, LABEL_PX, TITLE_PX, FOOT_PX = 76, 96, 46, 26
FONT_PX = 13
INK, FAINT, BACKGROUND = (20, 20, 20), (120, 120, 120), (255, 255, 255)
DARK = np.array([8, 48, 107], np.float64)  # the colour of weight 1


def label(text: str, width: int = 9) -> str:
    """A token's text, short and visible on one line (space as '·', newline as '\\n'; PIL's
    default font draws ASCII, so other characters show as '?')."""
    shown = text.replace("\n", "\\n").replace("\t", "\\t") or "(none)"
    shown = _ascii(shown).replace(" ", "·")
    return shown if len(shown) <= width else shown[:width - 2] + ".."


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def weight_colors(weights: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] → RGB uint8, white to dark blue on a square-root scale (so the small
    weights most heads spread over many tokens stay visible)."""
    level = np.sqrt(np.clip(weights, 0, 1))[..., None]
    return (255 * (1 - level) + DARK * level).round().astype(np.uint8)


def _rotated(text: str, font) -> Image.Image:
    box = font.getbbox(text)
    tile = Image.new("RGB", (max(1, box[2]) + 2, FONT_PX + 4), BACKGROUND)
    ImageDraw.Draw(tile).text((1, 0), text, fill=INK, font=font)
    return tile.rotate(90, expand=True)


def attention_grid(weights: np.ndarray, keys: list[str], positions: list[int],
                   title: str) -> Image.Image:
    """(layers, heads, K) weights over the tokens ``keys`` (at ``positions``, increasing) as
    the picture described above, with ``title`` on top."""
    layers, heads, n_keys = weights.shape
    gap = next((k for k in range(1, n_keys) if positions[k] > positions[k - 1] + 1), None)
    key_px = int(np.clip((MAX_WIDTH - LEFT) // (heads * n_keys), MIN_KEY_PX, MAX_KEY_PX))
    key_px = max(key_px, -(-MIN_CELL_PX // n_keys))  # room for "head 12" over a short strip
    gap_px = 0 if gap is None else max(4, key_px // 2)
    x_of = [k * key_px + (gap_px if gap is not None and k >= gap else 0) for k in range(n_keys)]
    cell_w = key_px * n_keys + gap_px
    font, big = label_font(FONT_PX), label_font(15)
    title = _ascii(title)
    shown = (f"tokens {positions[0]} to {positions[-1]}" if gap is None else
             f"token {positions[0]}, then {positions[gap]} to {positions[-1]}")
    foot = (f"{shown}, the clicked one rightmost. Darker = more attention (square-root scale: "
            "white 0, dark blue 1)")
    width = max(LEFT + heads * (cell_w + HEAD_GAP), 12 + int(font.getlength(foot)),
                12 + int(big.getlength(title)))
    top = TITLE_PX + LABEL_PX
    height = top + layers * (ROW_PX + ROW_GAP) + FOOT_PX
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), title, fill=INK, font=big)
    stride = max(1, math.ceil((FONT_PX + 3) / key_px))
    for head in range(heads):
        x0 = LEFT + head * (cell_w + HEAD_GAP)
        draw.text((x0, TITLE_PX - 18), f"head {head + 1}", fill=FAINT, font=font)
        for k, text in enumerate(keys):
            if k and ((n_keys - 1 - k) % stride or k < stride):  # back from the clicked one,
                continue  # and the first
            tile = _rotated(label(text), font)
            image.paste(tile, (x0 + x_of[k] + (key_px - tile.width) // 2,
                               top - 4 - tile.height))
        strips = np.repeat(weight_colors(weights[:, head]), key_px, axis=1)  # (L, K*key_px, 3)
        if gap is not None:
            strips = np.insert(strips, [gap * key_px] * gap_px, 215, axis=1)  # grey: left out
        for layer in range(layers):
            y0 = top + layer * (ROW_PX + ROW_GAP)
            row = Image.fromarray(np.ascontiguousarray(strips[layer][None])).resize(
                (cell_w, ROW_PX), Image.Resampling.NEAREST)
            image.paste(row, (x0, y0))
            draw.rectangle([x0 - 1, y0 - 1, x0 + cell_w, y0 + ROW_PX], outline=(200, 200, 200))
    for layer in range(layers):
        y0 = top + layer * (ROW_PX + ROW_GAP)
        draw.text((6, y0), f"layer {layer + 1}", fill=INK, font=font)
    draw.text((6, height - FOOT_PX + 6), foot, fill=FAINT, font=font)
    return image
