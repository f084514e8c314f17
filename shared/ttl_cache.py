"""A small thread-safe LRU cache whose entries also expire after a time-to-live."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlLruCache"]

V = TypeVar("V")


class TtlLruCache(Generic[V]):
    """At most ``size`` entries (least recently used evicted first), each valid for ``ttl`` seconds.

    ``size <= 0`` disables the cache (nothing is stored). ``clock`` returns seconds; inject a fake in tests.
    Values are returned as stored: callers that hand out mutable values should copy them.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl, self._clock = size, ttl, clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: Hashable) -> V | None:
        """The value for ``key``, or ``None`` if absent or expired (an expired entry is dropped)."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self._clock() - item[0] > self._ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value``, evicting the least recently used entries beyond ``size``."""
        if self._size <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        """Drop the entry for ``key`` if there is one."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
