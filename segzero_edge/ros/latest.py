"""A one-item slot that always holds the newest frame: a slow consumer never lags the source.

A camera driver or a capture thread :meth:`~LatestSlot.put` s every frame; the model's thread
:meth:`~LatestSlot.get` s the newest one. A frame not taken before the next arrives is
dropped (counted in :attr:`~LatestSlot.dropped`), as ROS camera pipelines do with a queue
depth of 1, instead of queueing and falling behind.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Thread-safe newest-item slot. ``get`` returns ``None`` on timeout and once closed (and
    emptied)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``, replacing an unread one; returns True when one was dropped.
        ``RuntimeError`` once closed."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the frame slot is closed")
            replaced = self._full
            self._item, self._full = item, True
            self.received += 1
            self.dropped += int(replaced)
            self._cond.notify_all()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout`` seconds (``None``: until one comes
        or the slot is closed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every waiting ``get``; later ``put`` calls raise."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
