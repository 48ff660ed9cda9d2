"""The runtime's one least-recently-used cache, bounded by the total weight of its entries.

Used for the SAM2 image embeddings of recent frames (:mod:`segzero_edge.pipeline.embedding_cache`,
weight 1 per frame); it is the same policy as the reasoner's byte-bounded prefix cache
(:mod:`segzero_edge.reasoner.prefix_cache`). An ``OrderedDict`` as ``functools.lru_cache``'s
pure-Python version keeps its order: the runtime takes no dependency for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _one(_: object) -> int:
    return 1


class LRU(Generic[K, V]):
    """Thread-safe LRU of ``K -> V`` bounded by ``sum(weigh(v)) <= max_weight``.

    ``weigh`` gives an entry's weight (a whole number >= 0; default 1, so ``max_weight`` counts
    entries). ``max_weight`` 0 stores nothing; an entry heavier than ``max_weight`` is not
    stored. :meth:`get` makes an entry the most recent; :meth:`put` evicts the least recent
    ones until the bound holds. ``weight`` is the current total; ``evictions`` counts entries
    evicted for room.

    Raises:
        ValueError: ``max_weight`` is negative or not a whole number.
    """

    def __init__(self, max_weight: int, weigh: Callable[[V], int] = _one) -> None:
        if isinstance(max_weight, bool) or not isinstance(max_weight, int) or max_weight < 0:
            raise ValueError(f"max_weight must be a whole number >= 0, got {max_weight!r}")
        self.max_weight = max_weight
        self._weigh = weigh
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.RLock()
        self.weight = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """The keys, least recent first (a snapshot)."""
        with self._lock:
            return iter(list(self._entries))

    def values(self) -> list[V]:
        """The values, least recent first (a snapshot)."""
        with self._lock:
            return [v for v, _ in self._entries.values()]

    def get(self, key: K, accept: Callable[[V], bool] | None = None) -> V | None:
        """The value stored for ``key`` (now the most recent), or ``None``; with ``accept``,
        ``None`` (and the order untouched) when ``accept(value)`` is false."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (accept is not None and not accept(entry[0])):
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> bool:
        """Store ``value`` for ``key`` (replacing what was there) as the most recent entry,
        evicting the least recent ones to stay within ``max_weight``; ``False`` (and ``key``
        no longer stored) when ``value`` alone is heavier than ``max_weight``."""
        weight = self._weigh(value)
        with self._lock:
            self.discard(key)
            if weight > self.max_weight:
                return False
            self._entries[key] = (value, weight)
            self.weight += weight
            while self.weight > self.max_weight:
                _, (_, gone) = self._entries.popitem(last=False)
                self.weight -= gone
                self.evictions += 1
            return True

    def discard(self, key: K, value: V | None = None) -> bool:
        """Forget ``key`` (only while it holds ``value``, compared by identity, when given);
        ``True`` when something was removed."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (value is not None and entry[0] is not value):
                return False
            del self._entries[key]
            self.weight -= entry[1]
            return True

    def get_or_put(self, key: K, make: Callable[[], V]) -> tuple[V, bool]:
        """``(value, True)`` when ``key`` is stored (now the most recent), else ``make()``
        stored for it and ``(that value, False)``; atomic: ``make`` runs under the cache's lock,
        once per missing key however many threads ask. Errors of ``make`` propagate and store
        nothing."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0], True
            value = make()
            self.put(key, value)
            return value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.weight = 0


__all__ = ["LRU"]
