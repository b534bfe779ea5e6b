"""The About tab: what each family is, in plain words, and credits."""

from __future__ import annotations

GENERAL = """
## What this is

One tab per family of generative model, each running a real model: weights we trained
ourselves and ship in `weights/` (loaded through the same `from_pretrained` call as a Hugging
Face hub model), or hub models where the internet is available. Every output carries a
reproducibility record (model hash, parameters, seed, library versions): the same seed and
settings give the same output.
"""

CREDITS = """
## Credits
Built on [Gradio](https://gradio.app), [PyTorch](https://pytorch.org),
[diffusers](https://github.com/huggingface/diffusers), [transformers](https://github.com/huggingface/transformers)
and [accelerate](https://github.com/huggingface/accelerate).
"""


def about_markdown(modules: dict) -> str:
    parts = [GENERAL]
    for module in modules.values():
        parts.append(f"## {module.TITLE}\n{module.ABOUT.strip()}\n")
    parts.append(CREDITS)
    return "\n".join(parts)


def list_models() -> dict:
    """Every model this session may use, by family: everyone's (shipped, hub) and the ones this
    session trained (other sessions' models are never listed)."""
    from playground.core import registry

    out = {}
    for family in sorted(registry._REGISTRY):
        entries = [registry.resolve(family, name) for name in registry.choices(family)]
        out[family] = [{"name": e.name, "source": "local" if e.is_local else "hub",
                        "installed": bool(e.path and e.path.exists()) if e.is_local else None,
                        "description": e.description,
                        "yours": e.owner is not None} for e in entries]
    return out
