"""Plain functions of the Compare tab (no gradio)."""

from __future__ import annotations

from pathlib import Path

from playground.compare.train import FAMILIES


def model_class(family: str):
    from playground.compare.diffusion import DiffusionMLP
    from playground.compare.model import ARModel, GANModel, VAEModel
    from playground.flow.model import FlowModel

    return {"gan": GANModel, "vae": VAEModel, "flow": FlowModel, "diffusion": DiffusionMLP,
            "ar": ARModel}[family]


def load_fit_folder(source: str | Path) -> dict:
    """{family: model in eval mode} from a fit folder (``<source>/<family>/``, HF format)."""
    folder = Path(source)
    return {family: model_class(family).from_pretrained(folder / family).eval()
            for family in FAMILIES if (folder / family / "config.json").is_file()}
