"""A byte-bounded LRU of reasoner prefix states, one per camera frame.

The Qwen2.5-VL prompt puts the image before the query (system prompt, ``<|im_start|>user``,
the image tokens, then the query), so every query on one frame shares the KV state after the
image. :class:`~segzero_edge.reasoner.llama_cpp.LlamaCppReasoner` keeps that state here as
llama.cpp's sequence state (``llama_state_seq_get_data``) and restores it
(``llama_state_seq_set_data``) for a later query on the same frame, so only the query tokens
are evaluated. Frames are keyed by content (:func:`segzero_edge.image.frame_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lru import LRU

DEFAULT_PREFIX_CACHE_MB = 128
"""Prefix cache bound (MiB), sized for an 8 GB Orin Nano: it keeps the prefix states of the 3
latest Qwen2.5-VL-3B frames (2 at 7B); the sizing is in docs/benchmarks.md ("Prefix cache")."""

Signature = tuple[tuple[int, ...], ...]
"""The prefix chunks as token tuples; an image chunk is ``(-1, n_image_tokens)``."""


@dataclass(frozen=True)
class PrefixState:
    """The KV state of sequence 0 after a frame's prompt prefix (everything up to the image).

    ``state`` is the buffer ``llama_state_seq_get_data`` filled (``nbytes`` long); ``n_past``
    the position the query starts at, which with M-RoPE is less than ``n_tokens`` (an image of
    ``nx x ny`` tokens advances positions by ``max(nx, ny)``); ``pos_max`` the largest KV
    position of the sequence, checked after a restore.
    """

    signature: Signature
    state: Any  # ctypes uint8 array
    nbytes: int
    n_tokens: int
    n_past: int
    pos_max: int


class PrefixCache:
    """LRU of :class:`PrefixState` by frame key, bounded by the bytes of the stored states
    (the runtime's one :class:`~segzero_edge.lru.LRU`, weighed by ``nbytes``).

    ``max_bytes`` of 0 disables it (nothing is stored). A state larger than ``max_bytes`` is
    not stored. Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"prefix cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: LRU[str, PrefixState] = LRU(self.max_bytes, weigh=lambda e: e.nbytes)
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._entries.weight

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str, signature: Signature) -> PrefixState | None:
        """The state stored for ``key`` when its prefix is ``signature`` (marks it most recent)."""
        entry = self._entries.get(key, accept=lambda e: e.signature == signature)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: PrefixState) -> None:
        """Store ``entry`` for ``key``, evicting least recently used frames to stay in bounds."""
        self._entries.put(key, entry)

    def discard(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        self._entries.discard(key)

    def clear(self) -> None:
        self._entries.clear()
