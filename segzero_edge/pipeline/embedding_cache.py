"""SAM2 image embeddings of recent frames, encoded once per frame, on a worker thread or not.

:class:`~segzero_edge.pipeline.SegZeroEdge` keeps the embedding of its latest frames here so
several queries on one frame (``segment_many``, a tracker's seeding) encode it once. Entries
are futures: a frame whose encoding is under way is not encoded twice, and with ``overlap`` the
encoding runs on a worker thread while the reasoner thinks. A failed (or cancelled) encoding
leaves the cache, whether or not a caller waits for it. The bound is the runtime's one
:class:`~segzero_edge.lru.LRU`, one frame per entry.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..backends import ImageEmbedding
from ..image import Frame
from ..lru import LRU

Encoded = tuple[ImageEmbedding, dict[str, float]]
"""A frame's SAM2 embedding and the seconds its pre-processing and encoding took
(``sam_preprocess``, ``sam_encode``)."""


@dataclass(frozen=True)
class FrameEmbedding:
    """A frame's SAM2 embedding (:meth:`SegZeroEdge.frame_embedding
    <segzero_edge.pipeline.SegZeroEdge.frame_embedding>`): ``timings`` the seconds of its
    pre-processing and encoding (``sam_preprocess``, ``sam_encode``; those of the call that
    encoded it when ``cache_hit``), ``cache_hit`` whether an earlier call had encoded it."""

    embedding: ImageEmbedding
    timings: dict[str, float]
    cache_hit: bool


DEFAULT_CACHE_FRAMES = 4
"""Frames whose SAM2 embedding the pipeline keeps (``cache_frames``)."""

CACHE_HIT = "sam_cache_hit"
"""Key a cache hit is marked with in a call's working timings (the pipeline moves it to
``Segmentation.sam_cache_hit``)."""


class EmbeddingCache:
    """Futures of :data:`Encoded` by frame key (:func:`segzero_edge.image.frame_key`).

    ``encode``: the encoding of one frame (:meth:`PixelPath.encode
    <segzero_edge.pipeline.pixel_path.PixelPath.encode>`).
    ``frames``: frames kept (0: none). ``overlap``: encode on this cache's worker thread (the
    future is returned at once) rather than in the calling thread. Thread-safe.
    """

    def __init__(self, encode: Callable[[Frame], Encoded], frames: int, overlap: bool) -> None:
        self._encode = encode
        self._overlap = overlap
        self._lru: LRU[str, Future[Encoded]] = LRU(frames)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segzero-sam2")

    def __contains__(self, key: object) -> bool:
        """Whether the encoding of the frame with this key is kept (or under way)."""
        return key in self._lru

    def future(self, frame: Frame, key: str) -> tuple[Future[Encoded], bool]:
        """``(future of frame's encoding, cache hit)``; ``key``: the frame's key, ``""`` to
        neither look up nor keep it. Without ``overlap`` the future is done on return."""
        if not key or not self._lru.max_weight:
            return self._start(frame), False
        fut, hit = self._lru.get_or_put(key, lambda: self._start(frame))
        if not hit:  # a failed encoding leaves the cache, whether or not a caller waits for it
            fut.add_done_callback(lambda f: self.forget_failed(key, f))
        return fut, hit

    def marked_future(self, frame: Frame, key: str, timings: dict[str, float]) -> Future[Encoded]:
        """:meth:`future`, a cache hit marked in ``timings`` (:data:`CACHE_HIT`)."""
        fut, hit = self.future(frame, key)
        if hit:
            timings[CACHE_HIT] = 1.0
        return fut

    def wait(
        self, frame: Frame, key: str, fut: Future[Encoded], timings: dict[str, float]
    ) -> ImageEmbedding:
        """The embedding ``fut`` (from :meth:`marked_future` with these ``timings``) gives;
        unless it is a cache hit, its encoding's seconds are added to ``timings``.

        An encoding that an earlier call started (a hit that call did not wait for) and that
        failed is forgotten and ``frame`` encoded afresh, once, instead of re-raising that
        call's error. Raises the encoding's error otherwise.
        """
        try:
            embedding, encode_timings = fut.result()
        except Exception:
            if CACHE_HIT not in timings:
                raise
            self.forget_failed(key, fut)
            del timings[CACHE_HIT]
            embedding, encode_timings = self.marked_future(frame, key, timings).result()
        if CACHE_HIT not in timings:
            timings.update(encode_timings)
        return embedding

    def forget_failed(self, key: str, fut: Future[Encoded]) -> None:
        """Drop ``fut`` for ``key`` when it failed or was cancelled (and is still the one kept)."""
        if fut.cancelled() or fut.exception() is not None:
            self._lru.discard(key, fut)

    def _start(self, frame: Frame) -> Future[Encoded]:
        if self._overlap:
            return self._pool.submit(self._encode, frame)
        fut: Future[Encoded] = Future()
        try:
            fut.set_result(self._encode(frame))
        except BaseException as e:
            fut.set_exception(e)
        return fut

    def close(self) -> None:
        """Wait for the encoding in progress and stop the worker thread (idempotent)."""
        self._pool.shutdown(wait=True)


__all__ = ["CACHE_HIT", "DEFAULT_CACHE_FRAMES", "EmbeddingCache", "Encoded", "FrameEmbedding"]
