"""bench.registry.best_of_pair: alternates the two sides (swapping which goes first) and
reports each side's minimum."""

import time

from bench.registry import best_of_pair


def test_best_of_pair_alternates_and_times_each_side():
    calls = []

    def ours():
        calls.append("ours")
        time.sleep(0.02)

    def reference():
        calls.append("ref")
        time.sleep(0.01)

    t_ours, t_ref = best_of_pair(ours, reference, repeats=3, warmup=1)
    assert calls == ["ours", "ref"] + ["ref", "ours", "ours", "ref", "ref", "ours"]
    assert 0.02 <= t_ours < 0.04
    assert 0.01 <= t_ref < 0.02
