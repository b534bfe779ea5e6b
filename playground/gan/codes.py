"""A face's latent code: z, plus (for a found face) an optional offset to the first layer's
output; where codes come from (a seed, or a "find this face" result) and how they are stored.

``render(G, z)`` is exactly ``G(z)``; with an offset it is ``G.main[1:](G.main[0](z) + offset)``,
so a found face that needed more than z alone still edits and interpolates like a seed: the
directions move its z, interpolation moves z and the offset together. No gradio here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from playground.core import registry
from playground.core.errors import UserInputError
from playground.core.seeding import resolve_seed
from playground.gan.inference import latent

FOUND_FAMILY = "gan-found"  # registry "family" of found codes: session-owned, never a model
SEED = "seed"  # the "start from" choice that means: the latent of the seed box
CODE_FILE, META_FILE = "code.safetensors", "found.json"


@dataclass
class LatentCode:
    """What a face is drawn from: z (nz,) and an optional first-layer offset (C, 4, 4)."""

    z: torch.Tensor
    offset: torch.Tensor | None = None
    label: str = ""  # "seed 5" or "found 'name'"
    record: dict | None = None  # for a found code: how it was found (its own record)
    seed: int | None = None  # for a seed's latent

    def describe(self) -> dict:
        """What a record says about this start: the seed, or the found code and its hash."""
        if self.record is None:
            return {"start": self.label}
        return {"start": self.label, "code_hash": code_hash(self),
                "found_with": self.record.get("params", {})}


def code_hash(code: LatentCode) -> str:
    digest = hashlib.sha256(code.z.detach().float().cpu().numpy().tobytes())
    if code.offset is not None:
        digest.update(code.offset.detach().float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def render(generator, z: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """z (B, nz) [+ offset (B or 1, C, 4, 4)] -> images (B, C, S, S) in [-1, 1].

    Without an offset this is ``generator(z)`` itself (same modules, same order).
    """
    if offset is None:
        return generator(z)
    h = generator.main[0](z[:, :, None, None]) + offset  # the first layer's output, shifted
    return generator.main[1:](h)


@torch.no_grad()
def render_codes(generator, z: torch.Tensor, offset: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Like ``render`` but on the generator's device, returned on CPU in [0, 1]."""
    from playground.gan.augment import to_unit

    device = next(generator.parameters()).device
    off = None if offset is None else offset.to(device)
    return to_unit(render(generator, z.to(device), off)).cpu()


# ---- stored found codes ----------------------------------------------------------------------

def save_found(folder: Path, z: torch.Tensor, offset: torch.Tensor | None, meta: dict) -> None:
    """Write a found code (z, optional offset) and its metadata into ``folder``."""
    tensors = {"z": z.detach().float().cpu().contiguous()}
    if offset is not None:
        tensors["offset"] = offset.detach().float().cpu().contiguous()
    save_file(tensors, str(folder / CODE_FILE))
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=str))


def found_choices() -> list[str]:
    """The found codes this session may use (newest last)."""
    return registry.choices(FOUND_FAMILY)


def load_found(name: str, entry: registry.ModelEntry) -> LatentCode:
    """The found code ``name`` of this session, checked against the selected model ``entry``."""
    if name not in found_choices():
        known = ", ".join(found_choices()) or "none yet: run 'find this face' first"
        raise UserInputError(f"No found face called {str(name)[:80]!r} in this session "
                             f"(found faces: {known}).")
    folder = registry.resolve(FOUND_FAMILY, name).path
    try:
        meta = json.loads((folder / META_FILE).read_text())
        tensors = load_file(str(folder / CODE_FILE))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"The found face {name!r} could not be read ({exc}).") from None
    if meta.get("model_source") != entry.source:
        raise UserInputError(f"{name!r} was found with the model '{meta.get('model')}'; select "
                             "that model to edit or interpolate it (a code only means a face "
                             "for the generator it was found with).")
    return LatentCode(tensors["z"], tensors.get("offset"), f"found {name!r}", meta["record"])


def start_code(entry: registry.ModelEntry, nz: int, start: str | None, seed) -> LatentCode:
    """The code to edit or interpolate from: the seed's latent (``start`` empty or "seed"), or
    a found face of this session."""
    if start is None or not str(start).strip() or str(start).strip() == SEED:
        value = resolve_seed(seed)
        return LatentCode(latent(value, nz), None, f"seed {value}", seed=value)
    return load_found(str(start).strip(), entry)

