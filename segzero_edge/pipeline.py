"""``SegZeroEdge``: reasoner -> coordinate mapping -> SAM2 -> mask, with timings.

The SAM2 image encoding runs on a worker thread while the reasoner thinks (they share only
the image); encodings are cached per frame so several queries on one frame encode it once (a
failed encoding is not kept). ``close()`` waits for the calls in progress on other threads.
The reasoner (llama.cpp) keeps the KV state after a frame's image tokens for later queries on
that frame, and all objects of one answer are decoded by SAM2 in one decoder call.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import pixels
from .answer import parse_answer, to_image_frame
from .backends import ImageEmbedding, Reasoner, Segmenter
from .errors import BackendError
from .image import ImageLike, load_image
from .image import frame_key as _frame_key
from .prompt import build_prompt
from .segmenter.prompts import batch_prompts, prompt_arrays
from .segmenter.select import select_masks
from .types import ObjectPrompt, Segmentation, Status

if TYPE_CHECKING:
    from .segmenter.memory import SAM2Memory
    from .tracker import Tracker

_Encoded = tuple[ImageEmbedding, dict[str, float]]
"""A frame's SAM2 embedding and the seconds its pre-processing and encoding took."""


class SegZeroEdge:
    """Reasoning segmentation: ``segment(image, query) -> Segmentation``.

    Build it with :meth:`from_bundle`, or pass any :class:`Reasoner` and :class:`Segmenter`.
    ``segment`` is thread-safe: calls may come from several threads at once.
    """

    def __init__(
        self,
        reasoner: Reasoner,
        segmenter: Segmenter,
        *,
        cache_frames: int = 4,
        overlap: bool = True,
        max_objects: int = 16,
        memory: SAM2Memory | None = None,
    ) -> None:
        self.reasoner = reasoner
        self.segmenter = segmenter
        self.memory = memory
        """SAM2's video memory graphs for :meth:`track` (opened from the bundle on first use)."""
        self.bundle_dir: Path | None = None
        self.cache_frames = max(0, int(cache_frames))
        self.overlap = overlap
        self.max_objects = max_objects
        self._reasoner_lock = threading.Lock()
        self._segmenter_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._memory_lock = threading.Lock()
        self._cache: OrderedDict[str, Future[_Encoded]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segzero-sam2")
        self._closed = False
        self._calls = 0  # segment() calls in progress
        self._calls_done = threading.Condition()

    @classmethod
    def from_bundle(cls, path: str | os.PathLike[str], **options: Any) -> SegZeroEdge:
        """Load a bundle directory (see README): verify its manifest, open the backends.

        Options: ``reasoner_backend`` / ``segmenter_backend`` ("auto" or a name),
        ``verify_hashes``, ``n_gpu_layers``, ``n_threads``, ``grammar``, ``max_new_tokens``,
        ``extra_bufts`` (llama.cpp's extra buffer types; default off where llama.cpp reports
        AMX), ``cache_frames``, ``overlap``.
        """
        from .bundle import open_backends

        pipeline_opts = {k: options.pop(k) for k in ("cache_frames", "overlap") if k in options}
        reasoner, segmenter = open_backends(path, **options)
        model = cls(reasoner, segmenter, **pipeline_opts)
        model.bundle_dir = Path(path)
        return model

    # -- SAM2 encoding with a per-frame cache ------------------------------------------
    def _encode(self, img: np.ndarray) -> _Encoded:
        t0 = time.perf_counter()
        sam_in = pixels.preprocess_sam(img)
        t1 = time.perf_counter()
        with self._segmenter_lock:
            try:
                emb = self.segmenter.encode(sam_in)
            except Exception as e:
                raise BackendError(
                    f"segmenter {self.segmenter.name!r} failed to encode: {e}"
                ) from e
        return emb, {"sam_preprocess": t1 - t0, "sam_encode": time.perf_counter() - t1}

    def _embedding_future(self, img: np.ndarray, timings: dict[str, float]) -> Future[_Encoded]:
        key = _frame_key(img) if self.cache_frames else ""
        with self._cache_lock:
            fut = self._cache.get(key) if key else None
            if fut is not None:
                self._cache.move_to_end(key)
                timings["sam_cache_hit"] = 1.0
                return fut
            if self.overlap:
                fut = self._pool.submit(self._encode, img)
            else:
                fut = Future()
                try:
                    fut.set_result(self._encode(img))
                except BaseException as e:
                    fut.set_exception(e)
            if key:
                self._cache[key] = fut
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
        if key:  # a failed encoding leaves the cache, whether or not a caller waits for it
            fut.add_done_callback(lambda f: self._forget_failed(key, f))
        return fut

    def _forget_failed(self, key: str, fut: Future[_Encoded]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            with self._cache_lock:
                if self._cache.get(key) is fut:
                    del self._cache[key]

    # -- the call -----------------------------------------------------------------------
    def segment(self, image: ImageLike, query: str) -> Segmentation:
        """Segment what ``query`` describes in ``image`` (path, PIL image or H x W x 3 uint8).

        Raises ``ValueError`` for bad input (an image that cannot be read or is too large, an
        empty, over-long or non-text query, a prompt that does not fit the reasoner's
        context), ``BackendError`` when a backend fails, ``RuntimeError`` after :meth:`close`.
        A reasoner that runs out of context gives ``Status.TRUNCATED``.
        """
        with self._calls_done:
            if self._closed:
                raise RuntimeError("this SegZeroEdge has been closed")
            self._calls += 1
        try:
            return self._segment_many(image, [query])[0]
        finally:
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def segment_many(self, image: ImageLike, queries: Sequence[str]) -> list[Segmentation]:
        """Segment each of ``queries`` in one ``image``; one :class:`Segmentation` per query.

        The image is loaded, pre-processed and SAM2-encoded once; the reasoner evaluates the
        image tokens once and, for the 2nd..Nth query, restores the KV state after them
        (``timings["reasoner_cache_hit"] == 1.0``) and evaluates only the query. Each result
        equals what ``segment(image, query)`` returns. Raises ``ValueError`` for a bad image or
        any bad query (before any model work), like :meth:`segment`.
        """
        with self._calls_done:
            if self._closed:
                raise RuntimeError("this SegZeroEdge has been closed")
            self._calls += 1
        try:
            return self._segment_many(image, queries)
        finally:
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def _segment_many(self, image: ImageLike, queries: Sequence[str]) -> list[Segmentation]:
        t_start = time.perf_counter()
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise ValueError("queries must be a list of str (for one query use segment())")
        if not queries:
            raise ValueError("queries is empty: give at least one query")
        for query in queries:
            if isinstance(query, str):
                _require_text(query, "query")
        prompts = [build_prompt(q) for q in queries]
        img = load_image(image)
        first: dict[str, float] = {}
        emb_future = self._embedding_future(img, first)
        t0 = time.perf_counter()
        r_in = pixels.preprocess_reasoner(img)
        first["preprocess"] = time.perf_counter() - t0
        fkey = _frame_key(img)
        results = []
        for i, prompt in enumerate(prompts):
            # the 2nd..Nth query reuse the frame's embedding: a SAM2 cache hit
            timings = dict(first) if i == 0 else {"sam_cache_hit": 1.0}
            t_query = t_start if i == 0 else time.perf_counter()
            result = self._segment_prompt(img, fkey, r_in, prompt, emb_future, timings)
            result.timings["total"] = time.perf_counter() - t_query
            results.append(result)
        return results

    def _segment_prompt(
        self,
        img: np.ndarray,
        fkey: str,
        r_in: np.ndarray,
        prompt: str,
        emb_future: Future[_Encoded],
        timings: dict[str, float],
    ) -> Segmentation:
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        # the frame key lets the reasoner reuse its KV state of this frame's image tokens
        cached = getattr(self.reasoner, "prefix_cache", None) is not None
        kwargs = {"frame_key": fkey} if cached else {}
        with self._reasoner_lock:
            try:
                out = self.reasoner.generate(r_in, prompt, **kwargs)
            except ValueError:  # the caller's input (e.g. a prompt over the context): as is
                raise
            except Exception as e:
                raise BackendError(f"reasoner {self.reasoner.name!r} failed: {e}") from e
        timings["reason"] = time.perf_counter() - t0
        timings.update(out.timings)
        timings["generated_tokens"] = float(out.n_generated_tokens)

        parsed = parse_answer(out.text, truncated=out.truncated)
        objects = to_image_frame(parsed.objects[: self.max_objects], (h, w))
        mask = np.zeros((h, w), dtype=bool)
        scores: list[float] = []
        status = parsed.status
        if objects:
            t0 = time.perf_counter()
            try:
                emb, encode_timings = emb_future.result()
            except Exception:
                if "sam_cache_hit" not in timings:
                    raise
                # an encoding that an earlier call started (and did not wait for) failed:
                # this call encodes the frame afresh, once, instead of re-raising that error
                self._forget_failed(fkey, emb_future)
                del timings["sam_cache_hit"]
                emb, encode_timings = self._embedding_future(img, timings).result()
            if "sam_cache_hit" not in timings:
                timings.update(encode_timings)
            timings["sam_wait"] = time.perf_counter() - t0
            logits, scores = self._decode(emb, objects, (h, w), timings)
            t0 = time.perf_counter()
            mask = pixels.postprocess_masks(logits, (h, w)).mask
            timings["postprocess"] = time.perf_counter() - t0
        return Segmentation(
            mask=mask,
            objects=list(objects),
            reasoning=parsed.reasoning,
            answer_raw=out.text,
            status=status,
            timings=timings,
            scores=scores,
        )

    def _decode(
        self,
        emb: ImageEmbedding,
        objects: list[ObjectPrompt],
        hw: tuple[int, int],
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[float]]:
        """All objects' prompts in one decoder call (one per distinct point count); the best
        multimask output of each, by predicted IoU, and its score."""
        t0 = time.perf_counter()
        chosen: list[np.ndarray] = [np.empty(0)] * len(objects)
        scores = [0.0] * len(objects)
        arrays = [prompt_arrays(obj.box, obj.points, hw) for obj in objects]
        for idx, coords, labels in batch_prompts(arrays):
            with self._segmenter_lock:
                try:
                    low, iou = self.segmenter.decode(emb, coords, labels)
                except Exception as e:
                    raise BackendError(
                        f"segmenter {self.segmenter.name!r} failed to decode: {e}"
                    ) from e
            masks, ious = select_masks(low, iou, multimask_output=True)
            best = np.argmax(ious, axis=1)
            for row, i in enumerate(idx):
                chosen[i] = masks[row, best[row]]
                scores[i] = float(ious[row, best[row]])
        timings["sam_decode"] = time.perf_counter() - t0
        return np.stack(chosen), scores

    # -- video ------------------------------------------------------------------------------
    def track(self, frame: ImageLike, query: str, **options: Any) -> Tracker:
        """Reason once on ``frame``, then follow the objects with SAM2's video memory.

        Returns a :class:`~segzero_edge.tracker.Tracker`: ``tracker.update(next_frame)``
        gives a :class:`~segzero_edge.tracker.TrackedSegmentation` per frame without the
        reasoner. Options: ``rereason_after``, ``score_threshold``, ``num_frames`` (see
        ``Tracker``). Raises :class:`~segzero_edge.errors.BundleError` when the bundle was
        exported before tracking existed (re-export it; ``segment()`` still works).
        """
        if self._closed:
            raise RuntimeError("this SegZeroEdge has been closed")
        from .tracker import Tracker

        return Tracker(self, self._tracking_memory(), frame, query, **options)

    def _tracking_memory(self) -> SAM2Memory:
        with self._memory_lock:
            if self.memory is None:
                if self.bundle_dir is None:
                    raise RuntimeError(
                        "track() needs SAM2's memory graphs: load with SegZeroEdge.from_bundle "
                        "or pass memory= (segzero_edge.segmenter.auto.open_memory)"
                    )
                from .segmenter.auto import open_memory

                if self.segmenter.name == "tensorrt":
                    self.memory = open_memory(self.bundle_dir, "tensorrt")
                else:
                    providers = getattr(self.segmenter, "providers", None)
                    self.memory = open_memory(self.bundle_dir, "onnxruntime", providers=providers)
            return self.memory

    def close(self) -> None:
        """Release the backends and the worker thread, once the calls in progress on other
        threads have returned; later calls raise ``RuntimeError``. Idempotent."""
        with self._calls_done:
            if self._closed:
                return
            self._closed = True
            self._calls_done.wait_for(lambda: self._calls == 0)
        self._pool.shutdown(wait=True)
        self.reasoner.close()
        self.segmenter.close()
        if self.memory is not None:
            self.memory.close()

    def __enter__(self) -> SegZeroEdge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_text(text: str, what: str) -> None:
    """``ValueError`` naming the first lone surrogate (not encodable as UTF-8) in ``text``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text: lone surrogate {text[e.start]!r} at index {e.start} "
            "(a non-UTF-8 byte on the command line?)"
        ) from None


__all__ = ["BackendError", "SegZeroEdge", "Status"]
