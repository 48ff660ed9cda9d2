"""The per-frame SAM2 embedding cache (``EmbeddingCache``): a hit is marked in the call's
timings, and an encoding that an earlier call started and that failed is retried once by the
call that waits for it, not re-raised."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from segzero_edge.pipeline.embedding_cache import CACHE_HIT, EmbeddingCache, Encoded

pytestmark = pytest.mark.runtime

FRAME = np.zeros((4, 6, 3), np.uint8)


class FirstEncodeFailsLate:
    """An encode whose first call blocks until released, then fails (a transient CUDA error
    on the worker thread); later calls give an embedding named by their call number."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, frame: object) -> Encoded:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(10)
            raise RuntimeError("CUDA error: out of memory")
        return f"embedding {self.calls}", {"sam_encode": 0.25}


def test_a_hit_on_an_encoding_that_fails_is_encoded_afresh_once() -> None:
    encode = FirstEncodeFailsLate()
    cache = EmbeddingCache(encode, frames=2, overlap=True)
    try:
        first: dict[str, float] = {}
        started = cache.marked_future(FRAME, "k", first)  # the first call does not wait
        assert first == {}
        later: dict[str, float] = {}
        fut = cache.marked_future(FRAME, "k", later)
        assert fut is started and later == {CACHE_HIT: 1.0}  # a hit on the encoding under way
        encode.release.set()
        embedding = cache.wait(FRAME, "k", fut, later)
        # that encoding failed: this call encoded the frame again, once, and owns the seconds
        assert embedding == "embedding 2" and encode.calls == 2
        assert later == {"sam_encode": 0.25}
        # the fresh encoding is the one kept: the next call is a hit on it
        again: dict[str, float] = {}
        assert cache.wait(FRAME, "k", cache.marked_future(FRAME, "k", again), again) == (
            "embedding 2"
        )
        assert again == {CACHE_HIT: 1.0} and encode.calls == 2
    finally:
        cache.close()


def test_a_failed_encoding_of_the_waiting_call_itself_is_raised() -> None:
    encode = FirstEncodeFailsLate()
    encode.release.set()
    cache = EmbeddingCache(encode, frames=2, overlap=False)
    try:
        timings: dict[str, float] = {}
        fut = cache.marked_future(FRAME, "k", timings)
        with pytest.raises(RuntimeError, match="CUDA error"):
            cache.wait(FRAME, "k", fut, timings)
        assert encode.calls == 1 and "k" not in cache  # not retried, not kept
    finally:
        cache.close()
