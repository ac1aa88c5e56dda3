"""The package's one bounded cache: the engine's traced graphs, the explorers' states, their expensive
parts and rendered panels. It lives in the engine (the lowest layer) so that every layer can use it."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable


class BoundedCache:
    """A least-recently-used mapping that keeps at most ``size`` entries.

    >>> cache = BoundedCache(2)
    >>> cache.get("a", lambda: 1), cache.get("a", lambda: 2)
    (1, 1)
    """

    def __init__(self, size: int = 64):
        if size < 1:
            raise ValueError(f"BoundedCache: size must be >= 1, got {size}")
        self.size = int(size)
        self._entries: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable):
        """The value kept for ``key``, or ``make()`` kept for it (the oldest entry is dropped)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        value = make()
        self._entries[key] = value
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def lookup(self, key: Hashable, default=None):
        """The value kept for ``key`` (now the most recently used), or ``default``."""
        if key not in self._entries:
            return default
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, value) -> None:
        """Keep ``value`` for ``key`` (the oldest entry is dropped when full)."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self):
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
