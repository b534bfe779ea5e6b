"""Loading our text-to-image pipelines: the registry's cached ``DiffusionPipeline``, its guide
UNet for autoguidance, a pool of copies so that requests sampling at the same time never
share a UNet (the step recorder, the Stop check and autoguidance hook it), and a pipeline
folder's UNet and text encoder weights for a training run to start from."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playground.core import registry
from playground.core.device import get_device, inference_dtype
from playground.core.errors import UserInputError
from playground.txt2img import FAMILY
from playground.txt2img.autoguidance import load_guide


@dataclass
class LoadedPipeline:
    """A cached diffusers pipeline and the guide UNet stored beside it (None: no autoguidance)."""
    pipe: object
    guide: object | None = None


def load_pipeline(model: str | registry.ModelEntry, copy: int = 0) -> LoadedPipeline:
    """The cached pipeline for a registry name, hub id or an entry already resolved for this
    request (fp16 on CUDA, fp32 on CPU), with its guide UNet for autoguidance if it has one.
    ``copy`` picks one of several independent copies (see ``pipeline_copy``)."""
    device = get_device()
    dtype = inference_dtype(device)
    entry = model if isinstance(model, registry.ModelEntry) else registry.resolve(FAMILY, model)
    def load(source: str) -> LoadedPipeline:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype).to(device)
        guide = load_guide(source, dtype, device) if entry.is_local else None  # hub: none
        return LoadedPipeline(pipe, guide)

    return registry.load_model(FAMILY, entry, load, key=f"{device}-{dtype}-{copy}")


# Requests that sample at the same time each need a pipeline of their own: the step recorder,
# the Stop check and autoguidance hook the UNet. A bundled (small) model gets COPIES copies, so
# that many requests run side by side (the tab's queue slot allows as many); a hub model, often
# gigabytes, keeps one and its requests take turns.
COPIES = max(1, int(os.environ.get("PLAYGROUND_TXT2IMG_COPIES", "2")))
_POOLS: dict[str, queue.Queue] = {}
_POOLS_LOCK = threading.Lock()


def copy_pool(entry: registry.ModelEntry) -> queue.Queue:
    """The free copy numbers of ``entry``'s pipeline (COPIES for a bundled model, 1 for hub)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(entry.source)
        if pool is None:
            pool = _POOLS[entry.source] = queue.Queue()
            for k in range(COPIES if entry.is_local else 1):
                pool.put(k)
        return pool


@contextlib.contextmanager
def pipeline_copy(entry: registry.ModelEntry) -> Iterator[LoadedPipeline]:
    """Hold one copy of ``entry``'s pipeline for the length of a request."""
    pool = copy_pool(entry)
    k = pool.get()
    try:
        yield load_pipeline(entry, copy=k)
    finally:
        pool.put(k)


def load_initial_weights(unet, text_encoder, folder: Path) -> None:
    """Copy the UNet and text encoder weights of the pipeline in ``folder`` (same shapes)."""
    from safetensors.torch import load_file

    for module, file in ((unet, "unet/diffusion_pytorch_model.safetensors"),
                         (text_encoder, "text_encoder/model.safetensors")):
        state = {k: v.float() for k, v in load_file(folder / file).items()}
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as error:  # a size mismatch: another model config
            raise UserInputError(f"{folder / file} does not fit this preset's model: "
                                 f"{str(error).splitlines()[-1].strip()}") from None
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing or result.unexpected_keys:
            raise UserInputError(f"{folder / file} does not fit this preset's model: "
                                 f"{len(missing)} weights missing, "
                                 f"{len(result.unexpected_keys)} unexpected, e.g. "
                                 f"{(missing + result.unexpected_keys)[0]}.")
