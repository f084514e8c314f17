"""The query-result cache: LRU eviction, time-to-live, disabling."""

from __future__ import annotations

import threading

import pytest

from shared.ttl_cache import TtlLruCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_get_returns_what_was_put() -> None:
    cache: TtlLruCache[str] = TtlLruCache(4, 10.0, Clock())
    cache.put("a", "A")
    assert cache.get("a") == "A"
    assert cache.get("b") is None


@pytest.mark.parametrize(("elapsed", "alive"), [(9.9, True), (10.0, True), (10.1, False)],
                         ids=["before", "at-ttl", "after"])
def test_entries_expire_after_the_ttl(elapsed: float, alive: bool) -> None:
    clock = Clock()
    cache: TtlLruCache[int] = TtlLruCache(4, 10.0, clock)
    cache.put("k", 1)
    clock.now += elapsed
    assert (cache.get("k") == 1) is alive
    assert len(cache) == (1 if alive else 0)


def test_least_recently_used_is_evicted_first() -> None:
    cache: TtlLruCache[int] = TtlLruCache(2, 10.0, Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_putting_again_refreshes_value_and_age() -> None:
    clock = Clock()
    cache: TtlLruCache[int] = TtlLruCache(2, 10.0, clock)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == 2


@pytest.mark.parametrize("size", [0, -1], ids=["zero", "negative"])
def test_size_zero_or_less_stores_nothing(size: int) -> None:
    cache: TtlLruCache[int] = TtlLruCache(size, 10.0, Clock())
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0


def test_clear_empties_the_cache() -> None:
    cache: TtlLruCache[int] = TtlLruCache(3, 10.0, Clock())
    cache.put("a", 1)
    cache.clear()
    assert cache.get("a") is None


def test_concurrent_use_keeps_the_size_bound() -> None:
    cache: TtlLruCache[int] = TtlLruCache(50, 10.0, Clock())

    def work(offset: int) -> None:
        for i in range(500):
            cache.put((offset, i), i)
            cache.get((offset, i - 1))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
