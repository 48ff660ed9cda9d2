"""``SegZeroEdge``: reasoner -> coordinate mapping -> SAM2 -> mask, with timings.

Prompt, answer grammar, coordinate mapping and SAM2 prompt are the model family's
(:mod:`segzero_edge.families`), as its reference script runs the checkpoint. The SAM2 image
encoding can run on a worker thread while the reasoner thinks (they share only the image): by
default only when at least one of the two runs off the CPU (see
:func:`segzero_edge.placement.default_overlap`). ``close()`` waits for the calls in progress on
other threads. The reasoner (llama.cpp) keeps the KV state after a frame's image tokens for
later queries on that frame, and all objects of one answer are decoded by SAM2 in one decoder
call. The package's other modules, one job each:

- :mod:`~segzero_edge.pipeline.embedding_cache`: SAM2 encodings cached per frame, so several
  queries on one frame encode it once (a failed one is not kept, nor re-raised to a later call);
- :mod:`~segzero_edge.pipeline.pixel_path`: the pixel work, as CUDA kernels on the buffers of a
  TensorRT segmenter, elsewhere as the native CPU twin;
- :mod:`~segzero_edge.pipeline.loading`: ``SegZeroEdge.from_bundle``.

A :class:`~segzero_edge.tracker.Tracker` uses only the public collaborator interface
(:meth:`SegZeroEdge.call_in_progress`, :meth:`SegZeroEdge.frame_embedding`,
:meth:`SegZeroEdge.segmenter_in_use`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..answer import parse_answer
from ..backends import PromptChecker, Reasoner, Segmenter
from ..errors import BackendError
from ..families import ModelFamily, get_family
from ..image import Frame, ImageLike, NV12Frame, load_frame
from ..image import frame_key as _frame_key
from ..layout import DEFAULT_MAX_OBJECTS
from ..options import whole_number
from ..placement import default_overlap
from ..types import ObjectPrompt, Segmentation, Status, normalize_box
from .embedding_cache import (
    CACHE_HIT,
    DEFAULT_CACHE_FRAMES,
    EmbeddingCache,
    Encoded,
    FrameEmbedding,
)
from .loading import from_bundle as _from_bundle
from .pixel_path import PixelPath

if TYPE_CHECKING:
    from ..segmenter.memory import SAM2Memory
    from ..tracker import Tracker

log = logging.getLogger(__name__)


class SegZeroEdge:
    """Reasoning segmentation: ``segment(image, query) -> Segmentation``.

    Build it with :meth:`from_bundle`, or pass any :class:`Reasoner` and :class:`Segmenter`
    with the ``family`` (name or :class:`ModelFamily`) of the reasoner's checkpoint.
    ``segment`` is thread-safe: calls may come from several threads at once.
    """

    def __init__(
        self,
        reasoner: Reasoner,
        segmenter: Segmenter,
        *,
        family: str | ModelFamily,
        cache_frames: int = DEFAULT_CACHE_FRAMES,
        overlap: bool | None = None,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        memory: SAM2Memory | None = None,
    ) -> None:
        """``family``: the model family (name or :class:`~segzero_edge.families.ModelFamily`)
        whose prompt, answer mapping and SAM2 prompt are used. ``overlap``: encode with SAM2
        while the reasoner runs (True), after it (False), or ``None`` for
        :func:`~segzero_edge.placement.default_overlap` of the backends' ``device_kind``;
        ``Segmentation.overlap`` says which ran. ``cache_frames`` (frames whose
        SAM2 encoding is kept, 0 = none) and ``max_objects`` (objects decoded per answer) are
        whole numbers; other values raise ``ValueError`` naming the option."""
        self.family = get_family(family)
        self.reasoner = reasoner
        self.memory = memory
        """SAM2's video memory graphs for :meth:`track` (opened from the bundle on first use)."""
        self.bundle_dir: Path | None = None
        self.cache_frames = whole_number("cache_frames", cache_frames, minimum=0)
        if overlap is None:
            overlap = default_overlap(reasoner.device_kind, segmenter.device_kind)
        self.overlap = bool(overlap)
        self.max_objects = whole_number("max_objects", max_objects, minimum=1)
        self._segmenter_lock = threading.Lock()
        self._pixels = PixelPath(segmenter, max_objects, self._segmenter_lock)
        self.pixel_path = "cpu" if self._pixels.cuda is None else "cuda"
        """Where pre/post-processing runs: "cuda" beside a GPU segmenter, else "cpu"."""
        self._reasoner_lock = threading.Lock()
        self._memory_lock = threading.Lock()
        self._cache = EmbeddingCache(self._pixels.encode, self.cache_frames, self.overlap)
        self._closed = False
        self._calls = 0  # segment() calls in progress
        self._calls_done = threading.Condition()

    # defined and documented in loading.py: the option checks and the opening of the backends
    from_bundle = classmethod(_from_bundle)

    @property
    def segmenter(self) -> Segmenter:
        """The SAM2 backend every encode and decode of this pipeline calls (assignable: the
        next call uses the new one; the CUDA pixel path stays bound to the first one's
        buffers)."""
        return self._pixels.segmenter

    @segmenter.setter
    def segmenter(self, value: Segmenter) -> None:
        self._pixels.segmenter = value

    def describe(self) -> str:
        """One line naming the bundle, the family, each backend with its device and threads,
        the overlap and the pixel path (what ``from_bundle`` logs at INFO)."""
        r, s = self.reasoner, self.segmenter
        where = f" [{', '.join(s.providers)}]" if s.providers else ""
        return (
            f"loaded {self.bundle_dir or 'backends'}: family {self.family.name}; "
            f"reasoner {r.name} on {r.device_kind}"
            + (f" ({r.n_threads} threads)" if r.n_threads else "")
            + f"; segmenter {s.name} on {s.device_kind}{where}"
            + (f" ({s.threads} threads)" if s.threads else "")
            + f"; overlap {'on' if self.overlap else 'off'}; pixels on {self.pixel_path}; "
            f"max_objects {self.max_objects}"
        )

    # -- the collaborator interface of a Tracker ----------------------------------------
    @contextlib.contextmanager
    def call_in_progress(self) -> Iterator[None]:
        """Count a call in progress (``segment``, ``segment_many``, a tracker's frame) for
        its duration: :meth:`close` waits until none is left.

        Raises:
            RuntimeError: This model has been closed.
        """
        with self._calls_done:
            if self._closed:
                raise RuntimeError("this SegZeroEdge has been closed")
            self._calls += 1
        try:
            yield
        finally:
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def frame_embedding(self, frame: Frame, *, cached: bool = True) -> FrameEmbedding:
        """SAM2's image embedding of ``frame`` (a loaded frame: an H x W x 3 uint8 RGB array or
        an :class:`~segzero_edge.image.NV12Frame`), pre-processed on :attr:`pixel_path`.

        ``cached``: take it from the per-frame cache (``cache_hit``: a ``segment()`` call or
        another caller encoded it) or keep it there; ``False``: encode it afresh, keep nothing
        (a tracked frame, seen once). Call inside :meth:`call_in_progress`.

        Raises:
            BackendError: The segmenter failed to encode.
        """
        if not cached:
            return FrameEmbedding(*self._pixels.encode(frame), False)
        hit: dict[str, float] = {}
        fkey = _frame_key(frame) if self.cache_frames else ""
        emb, timings = self._cache.marked_future(frame, fkey, hit).result()
        return FrameEmbedding(emb, timings, bool(hit))

    @contextlib.contextmanager
    def segmenter_in_use(self) -> Iterator[None]:
        """Hold the segmenter's lock: around every call on the segmenter (and on SAM2's memory
        graphs, which may share its device stream); calls on it are serialised."""
        with self._segmenter_lock:
            yield

    # -- the call -----------------------------------------------------------------------
    def segment(self, image: ImageLike | NV12Frame, query: str) -> Segmentation:
        """Segment what ``query`` describes in ``image``.

        ``image``: a path, a PIL image, an H x W x 3 uint8 RGB array, or an
        :class:`~segzero_edge.image.NV12Frame` (camera / decoder buffers, host or CUDA
        device memory; device memory needs :attr:`pixel_path` ``"cuda"``). The call returns
        after its work on the frame is done: the caller may then reuse the buffers (the
        result's ``image`` refers to the frame as given, for ``plot()``: draw before reusing
        them, or pass ``plot(image=...)``). The result holds one mask per object beside their
        union, boxes ordered and clamped to the image, SAM2's ``iou_predictions``, seconds
        per stage in ``timings`` and the run's flags (``overlap``, ``cuda_pixels``, cache
        hits) and ``generated_tokens`` in their own fields; see
        :class:`~segzero_edge.types.Segmentation`.

        Raises ``ValueError`` for bad input (an image that cannot be read or is too large, an
        empty, over-long or non-text query, a prompt that does not fit the reasoner's
        context), ``BackendError`` when a backend fails, ``RuntimeError`` after :meth:`close`.
        A reasoner that runs out of context gives ``Status.TRUNCATED``.
        """
        with self.call_in_progress():
            return self._segment_many(image, [query])[0]

    def segment_many(
        self, image: ImageLike | NV12Frame, queries: Sequence[str]
    ) -> list[Segmentation]:
        """Segment each of ``queries`` in one ``image``; one :class:`Segmentation` per query.

        The image is loaded, pre-processed and SAM2-encoded once; the reasoner evaluates the
        image tokens once and, for the 2nd..Nth query, restores the KV state after them
        (``reasoner_cache_hit`` is True) and evaluates only the query. Each result
        equals what ``segment(image, query)`` returns. Raises ``ValueError`` for a bad image or
        any bad query, like :meth:`segment`, before any model work: every query is checked
        (characters, and tokens against the context with a
        :class:`~segzero_edge.backends.PromptChecker` reasoner) before the first one runs.
        """
        with self.call_in_progress():
            return self._segment_many(image, queries)

    def _segment_many(
        self, image: ImageLike | NV12Frame, queries: Sequence[str]
    ) -> list[Segmentation]:
        t_start = time.perf_counter()
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise ValueError("queries must be a list of str (for one query use segment())")
        if not queries:
            raise ValueError("queries is empty: give at least one query")
        prompts = [self.family.build_prompt(q) for q in queries]
        img = load_frame(image)
        if isinstance(img, NV12Frame) and img.on_device and self._pixels.cuda is None:
            raise ValueError(
                f"an NV12 frame in device memory needs the CUDA path ({self._pixels.why})"
            )
        if isinstance(self.reasoner, PromptChecker):  # every query, before any model work
            for prompt in prompts:
                self.reasoner.check_prompt(prompt)
        first: dict[str, float] = {}
        fkey = _frame_key(img)
        emb_future = self._cache.marked_future(img, fkey if self.cache_frames else "", first)
        t0 = time.perf_counter()
        r_in = self._pixels.reasoner_input(img, self.family)
        first["preprocess"] = time.perf_counter() - t0
        results = []
        for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
            # the 2nd..Nth query reuse the frame's embedding: a SAM2 cache hit
            timings = dict(first) if i == 0 else {CACHE_HIT: 1.0}
            t_query = t_start if i == 0 else time.perf_counter()
            result = self._segment_prompt(img, fkey, r_in, prompt, emb_future, timings)
            result.timings["total"] = time.perf_counter() - t_query
            result.query = query
            result.image = None if isinstance(img, NV12Frame) and img.on_device else img
            results.append(result)
        if isinstance(img, NV12Frame) and img.on_device:
            emb_future.exception()  # the encode reads the caller's device buffers: finish it
        return results

    def _segment_prompt(
        self,
        img: Frame,
        fkey: str,
        r_in: np.ndarray,
        prompt: str,
        emb_future: Future[Encoded],
        timings: dict[str, float],
    ) -> Segmentation:
        h, w = img.hw if isinstance(img, NV12Frame) else img.shape[:2]
        t0 = time.perf_counter()
        # the frame key lets the reasoner reuse its KV state of this frame's image tokens
        key = (fkey or None) if self.reasoner.caches_prefix else None
        with self._reasoner_lock:
            try:
                out = self.reasoner.generate(r_in, prompt, frame_key=key)
            except ValueError:  # the caller's input (e.g. a prompt over the context): as is
                raise
            except Exception as e:
                raise BackendError(f"reasoner {self.reasoner.name!r} failed: {e}") from e
        timings["reason"] = time.perf_counter() - t0
        reasoner_timings = dict(out.timings)
        reasoner_hit = bool(reasoner_timings.pop("reasoner_cache_hit", 0.0))  # a flag: not seconds
        timings.update(reasoner_timings)

        parsed = parse_answer(out.text, truncated=out.truncated)
        objects = [
            ObjectPrompt(box=normalize_box(o.box, (h, w)), points=o.points)  # type: ignore[arg-type]
            for o in self.family.to_image_pixels(parsed.objects[: self.max_objects], (h, w))
        ]
        object_masks = np.zeros((0, h, w), dtype=bool)
        scores: list[float] = []
        status = parsed.status
        if objects:
            t0 = time.perf_counter()
            # a failed encoding an earlier call started is retried once (EmbeddingCache.wait)
            emb = self._cache.wait(img, fkey, emb_future, timings)
            timings["sam_wait"] = time.perf_counter() - t0
            object_masks, scores = self._pixels.decode(emb, objects, self.family, (h, w), timings)
        sam_hit = bool(timings.pop(CACHE_HIT, 0.0))  # a flag: not seconds
        return Segmentation(
            mask=np.asarray(object_masks.any(axis=0), dtype=bool),  # N = 0: all False
            object_masks=object_masks,
            objects=objects,
            reasoning=parsed.reasoning,
            answer_raw=out.text,
            status=status,
            timings=timings,
            iou_predictions=scores,
            overlap=self.overlap,
            cuda_pixels=self._pixels.cuda is not None,
            sam_cache_hit=sam_hit,
            reasoner_cache_hit=reasoner_hit,
            generated_tokens=int(out.n_generated_tokens),
        )

    # -- video ------------------------------------------------------------------------------
    def track(
        self,
        frame: ImageLike | NV12Frame,
        query: str,
        *,
        rereason_after: int | None = None,
        score_threshold: float = 0.0,
        num_frames: int | None = None,
    ) -> Tracker:
        """Reason once on ``frame``, then follow the objects with SAM2's video memory.

        Follows SAM2's ``SAM2VideoPredictor`` (``add_new_points_or_box`` with the answer's
        boxes and points, then ``propagate_in_video``, one object at a time).

        Args:
            frame: The first frame, as :meth:`segment` takes it.
            query: What to follow, as :meth:`segment` takes it.
            rereason_after: Re-run the reasoner by itself after this many frames in a row
                with a lost object (``None``: never; ``update(frame, reason=True)`` asks).
            score_threshold: An object is present when SAM2's object score logit is above it
                and its mask is not empty
                (:func:`~segzero_edge.tracking.result.object_present`).
            num_frames: The clip's length when known (pointer distances are normalised by
                it, as SAM2 does for a clip); ``None``: a live stream.

        Returns:
            A :class:`~segzero_edge.tracker.Tracker`: ``tracker.update(next_frame)`` gives a
            :class:`~segzero_edge.tracker.TrackedSegmentation` per frame without the reasoner.

        Raises:
            BundleError: The bundle was exported before tracking existed (re-export it;
                ``segment()`` still works).
            ValueError: A bad frame, query or option (named).
            RuntimeError: After :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("this SegZeroEdge has been closed")
        from ..tracker import Tracker

        return Tracker(
            self,
            self._tracking_memory(),
            frame,
            query,
            rereason_after=rereason_after,
            score_threshold=score_threshold,
            num_frames=num_frames,
        )

    def _tracking_memory(self) -> SAM2Memory:
        with self._memory_lock:
            if self.memory is None:
                if self.bundle_dir is None:
                    raise RuntimeError(
                        "track() needs SAM2's memory graphs: load with SegZeroEdge.from_bundle "
                        "or pass memory= (segzero_edge.bundle_memory.open_memory)"
                    )
                from ..bundle_memory import open_memory_for

                self.memory = open_memory_for(self.bundle_dir, self.segmenter)
            return self.memory

    def close(self) -> None:
        """Release the backends and the worker thread, once the calls in progress on other
        threads have returned; later calls raise ``RuntimeError``. Idempotent."""
        with self._calls_done:
            if self._closed:
                return
            self._closed = True
            self._calls_done.wait_for(lambda: self._calls == 0)
        self._cache.close()
        self._pixels.close()
        self.reasoner.close()
        self.segmenter.close()
        if self.memory is not None:
            self.memory.close()

    def __enter__(self) -> SegZeroEdge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BackendError", "SegZeroEdge", "Status"]
