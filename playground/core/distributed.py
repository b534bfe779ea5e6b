"""Make `accelerate launch --cpu --num_processes N` start N processes.

accelerate 1.15 runs a single process for `--cpu --num_processes N` unless MPI is installed
(it only sets MASTER_ADDR and ACCELERATE_USE_CPU). When we see that situation we re-launch the
same module under `torch.distributed.run` with N gloo workers, which accelerate then picks up
as DistributedType.MULTI_CPU — real DDP on CPU, no MPI needed.
"""

from __future__ import annotations

import os
import subprocess
import sys


def _requested_processes() -> int:
    """--num_processes of the parent `accelerate launch`, if that is who started us."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return 1
    if not any(a.endswith("accelerate") or a == "launch" for a in argv):
        return 1
    for i, arg in enumerate(argv):
        if arg.startswith("--num_processes"):
            value = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            return int(value)
    return 1


def relaunch_cpu_workers(module: str, argv: list[str]) -> int | None:
    """If accelerate asked for N>1 CPU processes but started one, run N workers; return rc."""
    env = os.environ
    if env.get("WORLD_SIZE") or env.get("ACCELERATE_USE_CPU", "").lower() != "true":
        return None
    if "MASTER_ADDR" not in env:
        return None
    n = _requested_processes()
    if n <= 1:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
           f"--master_port={env.get('MASTER_PORT', '29500')}", "-m", module, *argv]
    return subprocess.call(cmd, env={**env, "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
