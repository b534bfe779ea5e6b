"""The font every family's rendered figures label themselves with."""

from __future__ import annotations

from PIL import ImageFont


def label_font(size: int = 15):
    """PIL's default font at ``size`` pixels (its small bitmap font where Pillow lacks
    FreeType and cannot scale it)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()
