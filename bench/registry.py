"""The benchmark registry and the table printer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

BENCHMARKS: list[tuple[str, Callable[[], dict]]] = []


@dataclass
class Row:
    name: str
    ours: float
    reference: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("inf")


def benchmark(name: str):
    """Register ``fn() -> {"ours": x, "reference": y, "unit": "s", "note": "..."}``.

    Both numbers must be measured in the same run; the table prints ours / reference.
    For rates (higher is better) return the time per unit, so that lower ratios are better.
    """
    def decorate(fn):
        BENCHMARKS.append((name, fn))
        return fn
    return decorate


def best_of_pair(ours: Callable[[], object], reference: Callable[[], object],
                 repeats: int = 7, warmup: int = 1) -> tuple[float, float]:
    """Minimum wall times of ``ours`` and ``reference``, run alternately so that a slow spell
    of the machine hits both sides rather than one (seconds). The side that goes first swaps
    every repeat (reference, ours, ours, reference, ...): neither always runs right after the
    other's garbage or in its warmed caches."""
    for _ in range(warmup):
        ours()
        reference()
    times: tuple[list[float], list[float]] = ([], [])
    sides = [(reference, times[1]), (ours, times[0])]
    for i in range(repeats):
        for fn, out in sides if i % 2 == 0 else sides[::-1]:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


def format_table(rows: list[Row]) -> str:
    head = f"{'benchmark':<48} {'ours':>10} {'reference':>10} {'unit':<8} {'ratio':>7}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name:<48} {r.ours:>10.4g} {r.reference:>10.4g} {r.unit:<8} "
                     f"{r.ratio:>7.3f}  {r.note}")
    return "\n".join(lines)
