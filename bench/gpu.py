"""The GPU check: `python -m bench.gpu` on a CUDA machine, within about 5 minutes.

For every family: its `tiny` training preset for a few hundred steps on the shared accelerate
loop (bf16 on CUDA), and its generate path, each timed on CUDA and on the CPU in the same run;
prints one table of steps/s and images (or tokens, or samples) per second with the speed-up.
Without CUDA it says so and exits 0. Each measurement runs in a fresh subprocess, so the
device choice and the model cache start clean.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("txt2img", "gan", "vae", "gpt", "flow")
TRAIN_STEPS = {"txt2img": 200, "gan": 300, "vae": 300, "gpt": 300, "flow": 300}


def train_rate(family: str, device: str, steps: int) -> float:
    """steps/s of the family's tiny preset (the wall time the trainer itself reports)."""
    with tempfile.TemporaryDirectory() as tmp:
        mp = "bf16" if device == "cuda" else "no"
        out = subprocess.run(
            [sys.executable, "-m", "playground.train", family, "--preset", "tiny", "--max-steps",
             str(steps), "--out", f"{tmp}/run", "--device", device, "--mixed-precision", mp,
             "--checkpoint-every", "0", "--log-every", "50"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return result["steps"] / max(result["wall_time_s"], 1e-9)


GENERATE = {  # family -> (what is counted, code run in a worker; it prints the count)
    "txt2img": ("images/s", "from playground.txt2img.inference import generate\n"
                "generate('txt2img-shapes', 'a small red circle at the top left on a white "
                "background', steps=20, n_images=4, seed={seed}); print(4)"),
    "gan": ("images/s", "from playground.gan.inference import sample_faces\n"
            "sample_faces('gan-olivetti', seed={seed}, n=64); print(64)"),
    "vae": ("images/s", "from playground.vae.inference import sample_faces\n"
            "sample_faces('vae-olivetti', seed={seed}, n=64); print(64)"),
    "gpt": ("tokens/s", "from playground.gpt.inference import generate\n"
            "r = generate('gpt-austen', 'It is a truth universally acknowledged, that', "
            "max_new_tokens=120, seed={seed}); print(len(r.tokens) if hasattr(r, 'tokens') "
            "else 120)"),
    "flow": ("samples/s", "from playground.flow.inference import density_view\n"
             "density_view('8gaussians', 'flow-8gaussians', n_samples=5000, seed={seed}); "
             "print(5000)"),
}
WORKER = """
import time, sys
from playground import families
for name in families.available():
    families.load(name)
{warm}
t0 = time.perf_counter()
{timed}
sys.stderr.write(f"TIME {{time.perf_counter() - t0}}\\n")
"""


def generate_rate(family: str, device: str) -> float:
    """Items per second of the family's generate path (after one warm-up call)."""
    _, code = GENERATE[family]
    script = WORKER.format(warm=code.format(seed=0), timed=code.format(seed=1))
    env = dict(os.environ, PLAYGROUND_DEVICE=device, GRADIO_ANALYTICS_ENABLED="False")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=env, check=True)
    count = int(out.stdout.strip().splitlines()[-1])
    seconds = float(next(line.split()[1] for line in out.stderr.splitlines()
                         if line.startswith("TIME ")))
    return count / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--json", default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="no GPU needed: run every measurement with CPU on both sides and "
                             "20 training steps, to check this script itself")
    args = parser.parse_args(argv)
    import torch

    gpu = "cpu" if args.smoke else "cuda"
    if args.smoke:
        TRAIN_STEPS.update({f: 20 for f in TRAIN_STEPS})
    elif not torch.cuda.is_available():
        print("No CUDA device here: the GPU check has nothing to measure (run it on a machine "
              "with a GPU). Exiting 0.")
        return 0
    rows, t_start = [], time.perf_counter()
    for family in args.families:
        steps = TRAIN_STEPS[family]
        cpu, cuda = train_rate(family, "cpu", steps), train_rate(family, gpu, steps)
        rows.append((family, f"train tiny, {steps} steps (steps/s)", cpu, cuda))
        unit = GENERATE[family][0]
        cpu, cuda = generate_rate(family, "cpu"), generate_rate(family, gpu)
        rows.append((family, f"generate ({unit})", cpu, cuda))
    name = torch.cuda.get_device_name(0) if gpu == "cuda" else "none (--smoke: CPU twice)"
    print(f"GPU: {name}; torch {torch.__version__}; "
          f"{time.perf_counter() - t_start:.0f} s in all")
    print(f"| {'family':8} | {'what':38} | {'CPU':>9} | {'CUDA':>9} | {'CUDA/CPU':>8} |")
    print(f"|{'-' * 10}|{'-' * 40}|{'-' * 11}|{'-' * 11}|{'-' * 10}|")
    for family, what, cpu, cuda in rows:
        print(f"| {family:8} | {what:38} | {cpu:9.1f} | {cuda:9.1f} | {cuda / cpu:8.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"family": f, "what": w, "cpu": c, "cuda": g} for f, w, c, g in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
