"""The one bounded cache of the explorers: computed states, their expensive parts, rendered panels."""
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

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self):
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
