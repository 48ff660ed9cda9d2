"""Reason once, then track at camera rate with SAM2's video memory (``SegZeroEdge.track``).

``tracker = model.track(frame, query)`` runs ``segment()`` once (the reasoner names the
objects), seeds SAM2's memory with each object's box and points, and
``tracker.update(frame)`` propagates every object to a new frame with the image encoder,
memory attention, mask decoder and memory encoder: no reasoner.

What it mirrors of Meta's sam2 1.1.0 and where it differs: :mod:`segzero_edge.tracking`; the
rules of which memories a frame attends to: :mod:`segzero_edge.tracking.memory_selection`.

Memory is bounded: per object one conditioning frame, the features of the last
``num_maskmem - 1`` frames (stride 1; bfloat16, 0.5 MiB each) and the pointers of the last
``max_obj_ptrs_in_encoder - 1`` frames (1 KiB each). A tracker holds no thread or backend of
its own: dropping it frees its memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Protocol

import numpy as np

from .backends import ImageEmbedding, Segmenter, TrackingSegmenter
from .errors import BackendError, BundleError
from .families import ModelFamily
from .image import Frame, ImageLike, NV12Frame, load_frame
from .options import real_number, whole_number
from .pipeline.embedding_cache import FrameEmbedding
from .segmenter.memory import SAM2Memory, from_bfloat16, to_bfloat16
from .segmenter.prompts import prompt_arrays
from .tracking.memory_selection import (
    PAD_COORDS,
    PAD_LABELS,
    FrameMemory,
    ObjectMemory,
    choose_output,
    gate_no_object,
    memory_frames,
    pointer_frames,
    pointer_tpos,
    prune_memory,
)
from .tracking.result import TrackedSegmentation, tracked_frame
from .types import Segmentation

_Decoded = tuple[np.ndarray, float, float, np.ndarray]
"""``(gated low-res logits [256, 256], IoU, object score logit, obj_ptr [256])`` of one object."""


class TrackingHost(Protocol):
    """What the tracker uses of :class:`~segzero_edge.pipeline.SegZeroEdge`: its backends,
    family and object bound, ``segment()``, and its public collaborator interface
    (:meth:`~segzero_edge.pipeline.SegZeroEdge.call_in_progress`,
    :meth:`~segzero_edge.pipeline.SegZeroEdge.frame_embedding`,
    :meth:`~segzero_edge.pipeline.SegZeroEdge.segmenter_in_use`)."""

    segmenter: Segmenter
    family: ModelFamily
    max_objects: int

    def segment(self, image: ImageLike, query: str) -> Segmentation: ...

    def call_in_progress(self) -> contextlib.AbstractContextManager[None]: ...

    def frame_embedding(self, frame: Frame, *, cached: bool = True) -> FrameEmbedding: ...

    def segmenter_in_use(self) -> contextlib.AbstractContextManager[None]: ...


class Tracker:
    """Objects the reasoner found, tracked through frames with SAM2's memory.

    Made by :meth:`SegZeroEdge.track <segzero_edge.pipeline.SegZeroEdge.track>`; see
    :mod:`segzero_edge.tracking` for what it mirrors. ``update`` is thread-safe (calls on one
    tracker are serialised; backends are shared with ``segment()`` under its locks).

    Options: ``rereason_after`` (re-run the reasoner on the frame after this many consecutive
    frames where some tracked object was not present, or none was found; ``None``: only when
    asked), ``score_threshold`` (an object is present when its object score logit is above
    it and its mask is not empty: :func:`~segzero_edge.tracking.result.object_present`;
    default 0.0, SAM2's present/absent line), ``num_frames`` (the clip length when known;
    see :mod:`segzero_edge.tracking`; frames past it are refused). Bad options raise
    ``ValueError`` naming the option.
    """

    def __init__(
        self,
        model: TrackingHost,
        memory: SAM2Memory,
        frame: ImageLike,
        query: str,
        *,
        rereason_after: int | None = None,
        score_threshold: float = 0.0,
        num_frames: int | None = None,
    ) -> None:
        if rereason_after is not None:
            rereason_after = whole_number("rereason_after", rereason_after, minimum=1)
        if num_frames is not None:
            num_frames = whole_number("num_frames", num_frames, minimum=1)
        score_threshold = real_number("score_threshold", score_threshold)
        seg = model.segmenter
        if not (isinstance(seg, TrackingSegmenter) and seg.can_track):
            raise BundleError(
                f"segmenter {model.segmenter.name!r} cannot give object scores and pointers: "
                "its SAM2 decoder was exported before tracking existed; re-export the bundle"
            )
        self._segmenter: TrackingSegmenter = seg
        """The model's segmenter, as the tracking decoder it was checked to be."""
        self._model = model
        self._memory = memory
        self.config = memory.config
        self.query = query
        self.rereason_after = rereason_after
        self.score_threshold = score_threshold
        self.num_frames = num_frames
        self._lock = threading.Lock()
        self._hw: tuple[int, int] = (0, 0)  # the frame size of the last seeding
        self._objects: list[ObjectMemory] = []
        self._frame_index = 0
        self._seed_index = 0
        self._lost_frames = 0
        self.seed: Segmentation | None = None
        """The ``segment()`` result of the last reasoning."""
        self.last: TrackedSegmentation
        """The result of the latest frame (the seed frame at first)."""
        with self._lock, model.call_in_progress():
            self._reason(load_frame(frame), query, 0)

    # -- public ---------------------------------------------------------------------------
    @property
    def frame_index(self) -> int:
        """Index of the latest frame (the seed frame is 0)."""
        return self._frame_index

    @property
    def num_objects(self) -> int:
        return len(self._objects)

    def update(
        self, frame: ImageLike, *, reason: bool = False, query: str | None = None
    ) -> TrackedSegmentation:
        """The tracked objects on the next frame.

        Args:
            frame: The next frame, as :meth:`SegZeroEdge.segment
                <segzero_edge.pipeline.SegZeroEdge.segment>` takes it.
            reason: Re-run the reasoner on this frame and re-seed the memory from its answer
                (also when ``rereason_after`` lost frames ran in a row). A re-seed may change
                the frame size.
            query: Re-reason for this query from now on (implies ``reason``); ``None``: the
                tracker's :attr:`query`.

        Returns:
            A :class:`~segzero_edge.tracking.result.TrackedSegmentation`.

        Raises:
            ValueError: A bad frame (or one past a clip of ``num_frames``, or of another size
                without ``reason``) or a bad query.
            BackendError: A backend failed.
            RuntimeError: After :meth:`close`.

        A refused or failed frame changes nothing: the query, the frame index, the objects and
        their memory stay those of the frames before it (a failed re-seed keeps the previous
        objects).
        """
        img = load_frame(frame)
        with self._lock:
            if self._memory is None:
                raise RuntimeError("this Tracker has been closed")
            with self._model.call_in_progress():
                return self._next(img, reason or query is not None, query)

    def _next(self, img: Frame, reason: bool, query: str | None) -> TrackedSegmentation:
        auto = self.rereason_after is not None and self._lost_frames >= self.rereason_after
        index = self._next_index()
        if not (reason or auto) and _hw(img) != self._hw:
            (h, w), (h0, w0) = _hw(img), self._hw
            raise ValueError(
                f"frame is {w} x {h} but the tracker follows a {w0} x {h0} video (SAM2's memory "
                "belongs to one frame size): pass reason=True to re-seed on the new size"
            )
        if reason or auto:
            return self._reason(img, self.query if query is None else query, index)
        return self._step(img, index)

    def _next_index(self) -> int:
        """The index the next frame gets; ``ValueError`` when it is past the clip."""
        index = self._frame_index + 1
        if self.num_frames is not None and index >= self.num_frames:
            raise ValueError(
                f"frame {index} is past the clip: num_frames={self.num_frames} was given (frames "
                f"0..{self.num_frames - 1}); track a live stream with num_frames=None"
            )
        return index

    def memory_bytes(self) -> int:
        """Bytes of memory features and pointers held (bounded; see the module notes)."""
        total = 0
        for obj in self._objects:
            for mem in (*obj.cond.values(), *obj.non_cond.values()):
                total += mem.obj_ptr.nbytes + (0 if mem.features is None else mem.features.nbytes)
        return total

    def close(self) -> None:
        """Drop the memory (the backends belong to the ``SegZeroEdge``)."""
        with self._lock:
            self._objects = []
            self._memory = None  # type: ignore[assignment]

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- seeding --------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        with self._model.segmenter_in_use():
            try:
                return fn(*args)
            except Exception as e:
                raise BackendError(f"SAM2 {what} failed: {e}") from e

    def _reason(self, img: Frame, query: str, index: int) -> TrackedSegmentation:
        """Reason on frame ``index`` and re-seed: the tracker's state (query, frame index,
        objects, memory) is replaced only once everything succeeded."""
        t_start = time.perf_counter()
        seg = self._model.segment(img, query)
        timings = dict(seg.timings)
        objects = seg.objects[: self._model.max_objects]
        hw = _hw(img)
        seeded: list[ObjectMemory] = []
        outputs: list[_Decoded] = []
        if objects:
            # segment() encoded this frame: reuse its cached embedding when there is one
            enc = self._model.frame_embedding(img)
            if not (seg.sam_cache_hit or enc.cache_hit):  # not already counted by segment()
                timings.update(enc.timings)
            emb = enc.embedding
            for obj in objects:  # the family's SAM2 prompt, as segment() prompts it
                p = self._model.family.sam2.for_object(obj)
                coords, labels = prompt_arrays(p.box, p.points, hw, labels=p.labels)
                out = self._decode(emb, coords, labels, True, timings)
                state = ObjectMemory()
                state.cond[0] = self._remember(emb, out, True, timings)
                seeded.append(state)
                outputs.append(out)
        result = self._result(outputs, img, timings, t_start, index, reasoned=True)
        result.reasoning, result.answer_raw, result.query = seg.reasoning, seg.answer_raw, query
        result.overlap, result.cuda_pixels = seg.overlap, seg.cuda_pixels
        result.sam_cache_hit, result.reasoner_cache_hit = seg.sam_cache_hit, seg.reasoner_cache_hit
        result.generated_tokens = seg.generated_tokens
        if not objects:
            result.status = seg.status
        # every backend call succeeded: the new seed replaces the old one
        self.query, self.seed, self._objects, self._hw = query, seg, seeded, hw
        self._frame_index = self._seed_index = index
        self._lost_frames = 0
        self._commit(result)
        return result

    # -- one frame ------------------------------------------------------------------------
    def _step(self, img: Frame, index: int) -> TrackedSegmentation:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        t = index - self._seed_index
        outputs: list[_Decoded] = []
        new = []
        if self._objects:
            enc = self._model.frame_embedding(img, cached=False)
            timings.update(enc.timings)
            emb = enc.embedding
            for state in self._objects:
                pix = self._attend(emb, state, t, timings)
                conditioned = ImageEmbedding(pix, emb.high_res_feats_0, emb.high_res_feats_1)
                out = self._decode(conditioned, PAD_COORDS, PAD_LABELS, False, timings)
                new.append(self._remember(emb, out, False, timings))
                outputs.append(out)
        result = self._result(outputs, img, timings, t_start, index, reasoned=False)
        result.query = self.query
        if self.seed is not None:
            result.reasoning, result.answer_raw = self.seed.reasoning, self.seed.answer_raw
        # all objects or none: a backend failure leaves no object (and no index) a frame ahead
        for state, mem in zip(self._objects, new, strict=True):
            state.non_cond[t] = mem
            prune_memory(state, t, self.config)
        self._frame_index = index
        self._commit(result)
        return result

    def _attend(
        self, emb: ImageEmbedding, state: ObjectMemory, t: int, timings: dict[str, float]
    ) -> Any:
        cfg = self.config
        frames = memory_frames(t, state.cond, state.non_cond, cfg)
        mems = [state.cond[f] if tp == 0 else state.held(f) for tp, f in frames]
        if any(m.features is None for m in mems):  # pruned too early: a bug, not bad input
            raise RuntimeError(f"memory features of frames {frames} were dropped")
        memory = np.stack([from_bfloat16(m.features) for m in mems if m.features is not None])
        tpos = np.asarray([tp for tp, _ in frames], dtype=np.float32)
        ptr_frames, t_diff_max = pointer_frames(
            t, state.cond, state.non_cond, cfg, self._clip_frames_left()
        )
        ptrs = np.stack([state.held(f).obj_ptr for _, f in ptr_frames])
        ptr_tpos = pointer_tpos((d for d, _ in ptr_frames), t_diff_max)
        t0 = time.perf_counter()
        pix = self._call("memory attention", self._memory.attend, emb, memory, tpos, ptrs, ptr_tpos)
        timings["memory_attention"] = (
            timings.get("memory_attention", 0.0) + time.perf_counter() - t0
        )
        return pix

    def _clip_frames_left(self) -> int | None:
        """``num_frames`` of the clip as SAM2VideoPredictor counts it from the seed frame."""
        if self.num_frames is None:
            return None
        return max(self.num_frames - self._seed_index, 1)

    def _decode(
        self,
        emb: ImageEmbedding,
        coords: np.ndarray,
        labels: np.ndarray,
        is_init_cond_frame: bool,
        timings: dict[str, float],
    ) -> _Decoded:
        """``(gated low-res logits [256, 256], IoU, object score logit, obj_ptr [256])``.

        A conditioning frame counts its prompt points (box corners included); a tracked
        frame has none (``point_inputs=None``) and gets the padding point.
        """
        t0 = time.perf_counter()
        decode_track = self._segmenter.decode_track
        masks, iou, score, ptr = self._call("decoder", decode_track, emb, coords, labels)
        n_points = int(coords.shape[1]) if is_init_cond_frame else 0
        cfg = self.config
        logits, iou_best, token = choose_output(masks, iou, n_points, is_init_cond_frame, cfg)
        score_f = float(np.asarray(score).reshape(-1)[0])
        logits = gate_no_object(logits, score_f, cfg)
        obj_ptr = np.asarray(ptr, dtype=np.float32).reshape(ptr.shape[-2], -1)[token].copy()
        timings["sam_decode"] = timings.get("sam_decode", 0.0) + time.perf_counter() - t0
        return logits, iou_best, score_f, obj_ptr

    def _remember(
        self,
        emb: ImageEmbedding,
        out: _Decoded,
        from_prompts: bool,
        timings: dict[str, float],
    ) -> FrameMemory:
        logits, _, score, obj_ptr = out
        t0 = time.perf_counter()
        feats = self._call(
            "memory encoder",
            self._memory.encode_memory,
            emb,
            logits[None, None],
            np.array([[score]], dtype=np.float32),
            from_prompts and self.config.binarize_mask_from_pts_for_mem_enc,
        )
        timings["memory_encode"] = timings.get("memory_encode", 0.0) + time.perf_counter() - t0
        return FrameMemory(to_bfloat16(np.asarray(feats)[0]), obj_ptr)

    def _result(
        self,
        outputs: list[_Decoded],
        img: Frame,
        timings: dict[str, float],
        t_start: float,
        frame_index: int,
        *,
        reasoned: bool,
    ) -> TrackedSegmentation:
        t0 = time.perf_counter()
        result = tracked_frame(
            [o[0] for o in outputs],
            [o[1] for o in outputs],
            [o[2] for o in outputs],
            _hw(img),
            frame_index=frame_index,
            reasoned=reasoned,
            score_threshold=self.score_threshold,
        )
        result.image = None if isinstance(img, NV12Frame) and img.on_device else img
        timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        result.timings = timings
        return result

    def _commit(self, result: TrackedSegmentation) -> None:
        """``result`` becomes :attr:`last`; count it as lost or not for ``rereason_after``
        (lost: no object, or one not :func:`~segzero_edge.tracking.result.object_present`)."""
        present = result.present
        lost = not present or not all(present)
        self._lost_frames = self._lost_frames + 1 if lost else 0
        self.last = result


__all__ = ["TrackedSegmentation", "Tracker", "TrackingHost"]


def _hw(frame: Frame) -> tuple[int, int]:
    """(height, width) of an RGB array or an NV12 frame."""
    return frame.hw if isinstance(frame, NV12Frame) else (frame.shape[0], frame.shape[1])
