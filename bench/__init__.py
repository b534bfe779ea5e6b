"""Benchmarks: each row is a ratio measured in the same run (ours / reference).

Families add a module ``bench/<family>.py`` whose functions are decorated with ``@benchmark``.
"""
