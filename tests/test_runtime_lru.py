"""The runtime's one LRU (segzero_edge.lru): order, weight bound, identity-checked discard,
atomic get-or-put, refused bounds."""

from __future__ import annotations

import threading
import time

import pytest

from segzero_edge.lru import LRU

pytestmark = pytest.mark.runtime


def test_counts_entries_and_evicts_the_least_recent() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert list(lru) == ["a", "c"] and "b" not in lru and lru.evictions == 1
    assert lru.get("b") is None and len(lru) == 2 and lru.weight == 2
    lru.put("a", 10)  # a replacement is not an eviction
    assert lru.values() == [3, 10] and lru.evictions == 1


def test_weighs_entries_and_refuses_one_too_heavy() -> None:
    lru: LRU[str, bytes] = LRU(100, weigh=len)
    lru.put("a", b"x" * 40)
    lru.put("b", b"x" * 40)
    lru.put("c", b"x" * 40)  # 120 > 100: a goes
    assert list(lru) == ["b", "c"] and lru.weight == 80
    assert lru.put("b", b"x" * 101) is False  # too heavy alone: not stored, old b forgotten
    assert list(lru) == ["c"] and lru.weight == 40
    lru.clear()
    assert len(lru) == 0 and lru.weight == 0
    assert LRU[str, int](0).put("a", 1) is False


def test_get_with_accept_leaves_the_order() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a", accept=lambda v: v > 5) is None
    lru.put("c", 3)  # a was not touched: it is the one evicted
    assert list(lru) == ["b", "c"]


def test_discard_only_the_value_given() -> None:
    first, second = object(), object()
    lru: LRU[str, object] = LRU(4)
    lru.put("k", first)
    lru.put("k", second)
    assert lru.discard("k", first) is False and lru.get("k") is second
    assert lru.discard("k", second) is True and "k" not in lru and lru.weight == 0
    assert lru.discard("missing") is False


def test_get_or_put_makes_once_across_threads() -> None:
    lru: LRU[str, int] = LRU(4)
    made: list[int] = []

    def make() -> int:
        time.sleep(0.05)
        made.append(1)
        return len(made)

    out: list[tuple[int, bool]] = []
    threads = [
        threading.Thread(target=lambda: out.append(lru.get_or_put("k", make))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1] and sorted(out) == [(1, False), (1, True), (1, True), (1, True)]

    def fail() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        lru.get_or_put("bad", fail)
    assert "bad" not in lru


@pytest.mark.parametrize("bound", [-1, 1.5, True, "4"])
def test_bad_bound_is_refused(bound: object) -> None:
    with pytest.raises(ValueError, match="max_weight must be a whole number >= 0"):
        LRU(bound)  # type: ignore[arg-type]
