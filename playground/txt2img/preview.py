"""The live preview: ``generate`` streams the model's guess of the final images while it samples.

After every denoising step the step callback hands over the x0 estimate of every image of the
batch (``inference.Extras.on_step``: a few kilobytes of latents, no decoding in the sampler).
``generate_stream`` runs the sampler in a thread and, in the caller's thread, decodes the newest
estimate with the pipeline's VAE and yields it as one picture, every image upscaled to a readable
size. The full VAE decode is what makes the picture faithful, and it is not cheap (about a third
of a UNet step for our 64 px model on a CPU, half a step or more for SD at 512 px on a GPU), so
the preview keeps to a time budget: a step's estimate is skipped when the frames so far (decode,
and the caller's handling of the frame) took more than ``PREVIEW_BUDGET`` of the run's time, and
one that finishes while the previous frame is still being decoded or shown is replaced by the
next (the newest wins, as in A1111's live preview). The step-by-step strip (``show_steps``)
still records every step. The first frame is always shown, and the last frame is the final
images themselves (or, after a Stop, the prediction the run ended with).

Closing the stream (the user left, or the request was cancelled) stops the run after the step
in flight, like the Stop button.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from PIL import Image

from playground.txt2img.inference import Extras, Generation, generate, output_path

PREVIEW_SIDE = 256  # a preview image is drawn at least this big (nearest-neighbour upscale)
# the share of a run's time its preview frames may take (1 = a frame at every step, whatever
# it costs); 8 %: the preview costs at most about a tenth of the run
PREVIEW_BUDGET = float(os.environ.get("PLAYGROUND_TXT2IMG_PREVIEW_BUDGET", "0.08"))
GAP = 4  # pixels between the images of a batch


@dataclass
class PreviewFrame:
    """One picture of the stream: every image of the batch after ``step`` of ``total`` steps."""
    step: int
    total: int
    image: Image.Image
    result: Generation | None = None  # the run's outcome, on the last frame only


def upscale(image: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """``image`` enlarged by a whole factor (nearest neighbour: a 64 px shape stays crisp) until
    its longer side reaches ``side``; big images unchanged."""
    factor = max(1, math.ceil(side / max(image.size)))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def compose(images: list[Image.Image], side: int = PREVIEW_SIDE) -> Image.Image:
    """The images of a batch on one canvas: a row (a 2x2 square for four), each ``upscale``d."""
    tiles = [upscale(im.convert("RGB"), side) for im in images]
    columns = 2 if len(tiles) == 4 else len(tiles)
    rows = math.ceil(len(tiles) / columns)
    w, h = tiles[0].size
    canvas = Image.new("RGB", (columns * w + (columns - 1) * GAP, rows * h + (rows - 1) * GAP),
                       (24, 24, 27))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % columns) * (w + GAP), (i // columns) * (h + GAP)))
    return canvas


def save_picture(image: Image.Image, stem: str = "txt2img-live", out_dir=None) -> str:
    """A frame as a PNG under a fresh name in the session's output folder (``output_path``),
    compressed lightly: it is shown once, while the model samples."""
    path = output_path(stem, out_dir)
    image.save(path, format="PNG", compress_level=1)
    return str(path)


@torch.no_grad()
def decode(pipe, x0: torch.Tensor) -> list[Image.Image]:
    """The VAE's pictures of latents ``x0`` (B, C, h, w)."""
    vae = pipe.vae
    pixels = vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(pixels.float(), output_type="pil")


class _Newest:
    """A one-item mailbox between the sampler (``put``) and the stream (``take``): a new step
    replaces one not yet taken."""

    def __init__(self) -> None:
        self._item, self._closed = None, False
        self._ready = threading.Condition()

    def put(self, *item) -> None:
        with self._ready:
            self._item = item
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def take(self):
        """The newest item, waiting for one; None once the sampler has finished."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed)
            if self._closed:  # the final images follow; a pending estimate is not worth a decode
                return None
            item, self._item = self._item, None
            return item


def generate_stream(model: str, prompt: str, *, stop: Callable[[], bool] | None = None,
                    preview: bool = True, budget: float | None = None,
                    extras: Extras | None = None, **settings) -> Iterator[PreviewFrame]:
    """``inference.generate`` (same arguments, by keyword) as a stream of ``PreviewFrame``s.

    Args:
        stop: asked after every step, as by ``generate``; True ends the run within that step.
        preview: False yields only the last frame (the final images).
        budget: the share of the run's time the preview frames may take (None:
            ``PREVIEW_BUDGET``; 1: every step the caller keeps up with).
    Yields:
        a frame per step shown (``step`` = steps done), then the last frame, which carries the
        ``Generation`` in ``result`` and whose picture is the final images.
    """
    newest, left = _Newest(), threading.Event()
    extras = dataclasses.replace(extras or Extras(), on_step=newest.put if preview else None)
    outcome: dict = {}

    def should_stop() -> bool:
        return left.is_set() or (stop is not None and stop())

    def run() -> None:
        try:
            outcome["result"] = generate(model, prompt, stop=should_stop, extras=extras,
                                         **settings)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            newest.close()

    # the caller's context (its session) goes along: the PNGs land in that session's folder
    worker = threading.Thread(target=contextvars.copy_context().run, args=(run,),
                              name="txt2img-sampler", daemon=True)
    budget = PREVIEW_BUDGET if budget is None else budget
    start, spent = time.perf_counter(), 0.0
    worker.start()
    try:
        while (item := newest.take()) is not None:
            if spent > budget * (time.perf_counter() - start):
                continue  # over budget: this step goes unseen
            began = time.perf_counter()
            pipe, step, total, x0 = item
            yield PreviewFrame(step, total, compose(decode(pipe, x0)))
            spent += time.perf_counter() - began  # the decode and the caller's turn
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        result: Generation = outcome["result"]
        done = result.stopped_at or result.total_steps
        yield PreviewFrame(done, result.total_steps, compose(result.images), result)
    finally:
        left.set()  # a stream closed early: the run stops after the step in flight
        worker.join()
