"""Device choice (cuda > mps > cpu, overridable) and the dtype policy."""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "PLAYGROUND_DEVICE"
_override: str | None = None


def set_device_override(name: str | None) -> None:
    """Force a device for this process (from the ``--device`` flag); None restores auto."""
    global _override
    if name is not None and name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps")
    _override = name


def get_device(override: str | None = None) -> torch.device:
    """Return the device to run on: argument > --device flag > $PLAYGROUND_DEVICE > auto."""
    name = override or _override or os.environ.get(DEVICE_ENV) or ""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (fast and exact there), fp16 on CUDA/MPS (half the memory, tensor cores)."""
    return torch.float32 if device.type == "cpu" else torch.float16


def mixed_precision(device: torch.device) -> str:
    """accelerate's mixed-precision mode for training: bf16 where supported on CUDA, else none."""
    if device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def device_choices() -> list[str]:
    """Devices a user may train on here (the live-training dropdowns)."""
    return ["cpu", "cuda"] if torch.cuda.is_available() and not on_zerogpu() else ["cpu"]


def check_train_device(device: str) -> str:
    """``device`` if a user may train on it here, else a UserInputError saying why not."""
    from playground.core.errors import UserInputError

    if device not in ("cpu", "cuda"):
        raise UserInputError(f"Device must be cpu or cuda, got {device!r}.")
    if device == "cuda" and device not in device_choices():
        raise UserInputError("CUDA is not available for training here; train on the CPU.")
    return device


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (``SPACES_ZERO_GPU``, as the ``spaces`` package reads it)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")
