"""How long a VAE request asks ZeroGPU for (``core.zerogpu.gpu_handler``); gradio-free, so
each part of the tab (``tab.py``, ``tab_inside.py``) builds its duration functions from it."""

from __future__ import annotations

from playground.core import registry

# ZeroGPU slots (seconds), from the request.
# On a GPU our 64 px VAE decodes a frame in about a millisecond and the Stable Diffusion VAE a
# 256 px frame in some tens of ms; the base covers moving the model and writing the PNG/GIF,
# the per-image part is generous for the SD VAE, and a hub id adds time to fetch it. Shorter
# slots queue first on ZeroGPU, so a 10-frame walk asks for little.
BASE_S = 8.0
PER_IMAGE_S = 0.25
HUB_S = 20.0  # a hub id: download and move to the GPU inside the slot


def hub_extra(model) -> float:
    return HUB_S if isinstance(model, str) and registry.is_hub_id(model.strip()) else 0.0
