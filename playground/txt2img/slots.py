"""How long a text-to-image request asks ZeroGPU for (``core.zerogpu.gpu_handler``): the tab's
duration functions are built from ``step_seconds``; gradio-free, so every view's tab uses it."""

from __future__ import annotations

from playground.core.zerogpu import as_number

# ZeroGPU slots (seconds; gpu_handler clamps them to [5, 120]). A fixed part (the worker's first
# CUDA call, the text encoder, the VAE decode, writing the PNGs) plus the UNet steps: SD 1.5 at
# 512 px with classifier-free guidance runs about 15-25 steps/s on an A100-class GPU in fp16, so
# 0.1 s per step and image at 512x512 leaves room; the cost scales with the pixels (floored at
# 1/16 of that: our 64 px model is launch-bound, not pixel-bound), x1.5 with the step previews
# (a VAE decode per step) or autoguidance (a second UNet on half the batch), x2 for compare.
BASE_SECONDS = 10.0
SECONDS_PER_STEP_IMAGE_512 = 0.1


def step_seconds(steps, n_images, width, height, show_steps=False, autoguidance=None,
                 live_preview=False) -> float:
    pixels = as_number(width, 512) * as_number(height, 512) / 512**2
    extra = ((1.5 if show_steps else 1.0) * (1.0 if as_number(autoguidance, 1.0) == 0 else 1.5)
             * (1.5 if live_preview else 1.0))
    return (as_number(steps, 25) * max(1.0, as_number(n_images, 1)) * SECONDS_PER_STEP_IMAGE_512
            * max(pixels, 1 / 16) * extra)
