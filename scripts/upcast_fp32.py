"""Rewrite a model folder's fp16 safetensors as fp32 main weights, in place and exactly.

    python scripts/upcast_fp32.py weights/txt2img-shapes weights/gpt-austen

fp16 -> fp32 is exact, so outputs computed in fp32 do not change; the folder then loads with
the plain ``from_pretrained(folder)`` (no dtype argument) and runs on CPU in fp32, like a hub
model. ``"dtype": "float16"`` in a transformers ``config.json`` becomes ``"float32"``. A file
that would exceed ``--max-mb`` is left for ``save_pretrained(max_shard_size=...)`` instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def upcast_file(path: Path, max_mb: float) -> bool:
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if not any(t.dtype == torch.float16 for t in tensors.values()):
        return False
    tensors = {k: t.float() if t.dtype == torch.float16 else t for k, t in tensors.items()}
    size_mb = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    if size_mb > max_mb:
        raise SystemExit(f"{path}: {size_mb:.1f} MB in fp32, over {max_mb} MB; re-save it "
                         "sharded with save_pretrained(max_shard_size=...)")
    save_file(tensors, str(path), metadata=metadata)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--max-mb", type=float, default=9.5)
    args = parser.parse_args(argv)
    for folder in map(Path, args.folders):
        for path in sorted(folder.rglob("*.safetensors")):
            if upcast_file(path, args.max_mb):
                print(f"fp32: {path}")
        for config in folder.rglob("config.json"):
            data = json.loads(config.read_text())
            if data.get("dtype") == "float16" or data.get("torch_dtype") == "float16":
                data.update({k: "float32" for k in ("dtype", "torch_dtype") if k in data})
                config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
                print(f"config: {config}")


if __name__ == "__main__":
    main()
