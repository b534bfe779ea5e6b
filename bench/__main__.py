"""`python -m bench [--json FILE] [--only SUBSTRING]`: run every registered benchmark."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.registry import BENCHMARKS, Row, format_table


def load_modules() -> None:
    """Import every bench/<module>.py so its @benchmark functions register (startup first)."""
    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
             if m.name not in ("registry", "__main__")]
    for name in sorted(names, key=lambda n: (n != "startup", n)):
        importlib.import_module(f"bench.{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--only", default=None, help="run only benchmarks whose name contains this")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    load_modules()
    rows, failed = [], 0
    for name, fn in BENCHMARKS:
        if args.only and args.only not in name:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            result = fn()
            rows.append(Row(name, result["ours"], result["reference"], result.get("unit", "s"),
                            result.get("note", "")))
        except Exception:
            failed += 1
            traceback.print_exc()
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows],
                                              indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
