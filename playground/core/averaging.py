"""Weight averaging of model folders saved along one run (``--snapshot-every``): every
floating-point tensor of every ``*.safetensors`` file is the mean of that tensor across the
folders; everything else (integer buffers, configs, the tokenizer) comes from the last folder.
Averaging late points of a trajectory (Izmailov et al. 2018's SWA; "latest weight averaging")
smooths out the noise of the last steps and often generalises better than any single point.

    python -m playground.core.averaging --out FOLDER SNAPSHOT [SNAPSHOT ...]

The folders must hold the same files with the same tensor names and shapes (one run's
snapshots do); ``averaged_from.json`` in the output lists them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from playground.core.atomic import atomic_save_dir
from playground.core.errors import UserInputError


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*.safetensors"))


def average_folders(folders: list[str | Path], out: str | Path) -> Path:
    """Write the average of ``folders`` to ``out`` (atomically); returns ``out``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folders = [Path(f) for f in folders]
    if not folders:
        raise UserInputError("Give at least one folder to average.")
    files = _weight_files(folders[0])
    if not files:
        raise UserInputError(f"{folders[0]} holds no .safetensors file.")
    for folder in folders[1:]:
        if _weight_files(folder) != files:
            raise UserInputError(f"{folder} does not hold the same weight files as {folders[0]}.")

    def write(tmp: Path) -> None:
        last = folders[-1]
        for item in last.rglob("*"):
            if item.is_file() and item.suffix != ".safetensors":
                (tmp / item.relative_to(last)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, tmp / item.relative_to(last))
        for rel in files:
            handles = [safe_open(str(f / rel), "pt") for f in folders]
            names = list(handles[-1].keys())
            if any(sorted(h.keys()) != sorted(names) for h in handles):
                raise UserInputError(f"{rel} holds different tensors in different folders.")
            merged = {}
            for name in names:
                tensors = [h.get_tensor(name) for h in handles]
                if any(t.shape != tensors[0].shape for t in tensors):
                    raise UserInputError(f"{rel}: {name} has different shapes.")
                if tensors[-1].is_floating_point():  # mean in fp64, stored in the file's dtype
                    mean = torch.stack([t.double() for t in tensors]).mean(0)
                    merged[name] = mean.to(tensors[-1].dtype)
                else:
                    merged[name] = tensors[-1]
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            save_file(merged, str(tmp / rel), metadata=handles[-1].metadata())
        (tmp / "averaged_from.json").write_text(json.dumps([str(f) for f in folders], indent=1))

    return atomic_save_dir(out, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.core.averaging",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("folders", nargs="+")
    args = parser.parse_args(argv)
    try:
        print(average_folders(args.folders, args.out))
    except UserInputError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
