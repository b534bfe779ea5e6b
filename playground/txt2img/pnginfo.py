"""PNG info: the settings stored in a PNG written by ``inference.generate``, read back (the tab's
"PNG info" drop zone restores the controls from them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from playground.core import repro, uploads
from playground.core.errors import UserInputError
from playground.txt2img import FAMILY, MAX_TIMESTEP


@dataclass
class PngParameters:
    """The settings stored in a PNG written by ``generate`` ("PNG info")."""
    model: str
    prompt: str
    steps: int
    guidance: float
    scheduler: str
    n_images: int
    width: int
    height: int
    seed: int
    negative_prompt: str = ""
    autoguidance: float = 0.0  # PNGs made before autoguidance existed: it was off
    autoguidance_max_t: int = MAX_TIMESTEP
    stored: dict = field(default_factory=dict)  # every stored parameter (image_index, hash...)


def read_parameters(path) -> PngParameters:
    """The generation parameters stored in a PNG written by ``generate``; the upload goes
    through ``core.uploads`` (too big, not an image, truncated: a message that says so)."""
    if not path:
        raise UserInputError("Drop a PNG made by this tab to read its parameters.")
    # size and pixel budget checked from the header before anything is decoded (core.uploads)
    image = uploads.load_image(path, what="PNG")
    try:
        record = repro.read_png_record(image)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"Could not read the parameters stored in that PNG: {exc}") from exc
    if not record or record.get("family") != FAMILY:
        raise UserInputError("This PNG carries no text-to-image parameters (it was not made by "
                             "this tab, or its metadata was stripped).")
    stored = {**record["params"], "seed": record["seed"], "model": record["model"],
              "model_hash": record.get("model_hash")}
    names = {f.name for f in dataclasses.fields(PngParameters)} - {"stored"}
    try:
        return PngParameters(**{k: v for k, v in stored.items() if k in names}, stored=stored)
    except TypeError as exc:  # a record without one of the settings
        raise UserInputError(f"This PNG's parameters are incomplete: {exc}") from exc
