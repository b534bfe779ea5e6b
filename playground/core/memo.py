"""A small thread-safe memo with a size bound, for results built once per model and kept (a
model's latent directions, its map of the faces): the oldest entry goes when it is full."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedMemo(Generic[T]):
    """``get(key, build)``: the kept value for ``key``, else ``build()`` kept under it. Two
    threads may build the same key at once (the build is not held under the lock: it can take
    seconds); the value kept is the last one built, and every caller gets a valid value."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a memo keeps at least one value")
        self.size = size
        self._values: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                return self._values[key]
        value = build()
        with self._lock:
            self._values.pop(key, None)
            while len(self._values) >= self.size:
                self._values.pop(next(iter(self._values)))
            self._values[key] = value
        return value

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
