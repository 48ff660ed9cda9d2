"""Reason once, then track at camera rate with SAM2's video memory (``SegZeroEdge.track``).

``tracker = model.track(frame, query)`` runs ``segment()`` once (the reasoner names the
objects), seeds SAM2's memory with each object's box and points, and
``tracker.update(frame)`` propagates every object to a new frame with the image encoder,
memory attention, mask decoder and memory encoder: no reasoner.

What it mirrors, from Meta's sam2 1.1.0 (``sam2/sam2_video_predictor.py``,
``sam2/modeling/sam2_base.py``), one object at a time as ``propagate_in_video`` does:

* Seeding = ``add_new_points_or_box(box=..., points=..., labels=...)`` with the model
  family's SAM2 prompt (the points and labels ``segment()`` gave SAM2) on the frame, then
  ``propagate_in_video_preflight``: the decoder output chosen by ``_use_multimask`` (a box +
  point is 3 points -> single mask, with SAM2.1's dynamic fallback to the best multimask
  output), masked to ``NO_OBJECT_SCORE`` when the object score is <= 0, encoded into a
  *conditioning* memory with the mask binarised (``is_mask_from_pts``).
* Each update = ``_run_single_frame_inference(is_init_cond_frame=False)`` without prompts:
  memory attention over the conditioning frame plus the last ``num_maskmem - 1`` frames
  (``memory_temporal_stride_for_eval``), and object pointers of the conditioning frame and
  up to ``max_obj_ptrs_in_encoder - 1`` previous frames, temporal distances normalised by
  ``t_diff_max`` (``_prepare_memory_conditioned_features``); the best of the three
  multimask outputs (``multimask_output_for_tracking``); the memory encoder on its mask.
* Memory features are kept in bfloat16, as the predictor stores them.

Two differences, both stated: SAM2VideoPredictor's ``fill_hole_area`` post-processing runs
only with Meta's CUDA connected-components kernel (on CPU it warns and skips it), and is not
applied here; and ``t_diff_max`` is ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` when
``num_frames`` is given (a clip), else ``max_obj_ptrs_in_encoder - 1`` (a live stream).

Memory is bounded: per object one conditioning frame, the features of the last
``num_maskmem - 1`` frames (stride 1; bfloat16, 0.5 MiB each) and the pointers of the last
``max_obj_ptrs_in_encoder - 1`` frames (1 KiB each). A tracker holds no thread or backend of
its own: dropping it frees its memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Container, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol

import numpy as np

from . import pixels
from .backends import ImageEmbedding, Segmenter, TrackingSegmenter
from .errors import BackendError, BundleError
from .families import ModelFamily
from .image import Frame, ImageLike, NV12Frame, load_frame
from .options import real_number, whole_number
from .segmenter.memory import SAM2Memory, TrackingConfig, from_bfloat16, to_bfloat16
from .segmenter.prompts import prompt_arrays
from .segmenter.select import select_masks
from .types import Box, ObjectPrompt, Segmentation, Status

NO_OBJECT_SCORE = -1024.0
"""Mask logit SAM2 writes where the object score says the object is absent (NO_OBJ_SCORE)."""
PAD_COORDS = np.zeros((1, 1, 2), dtype=np.float32)
PAD_LABELS = -np.ones((1, 1), dtype=np.float32)
"""The decoder prompt of a frame without prompts: one padding point (``_forward_sam_heads``)."""


class _Model(Protocol):
    """What the tracker uses of :class:`~segzero_edge.pipeline.SegZeroEdge`."""

    segmenter: Segmenter
    family: ModelFamily
    max_objects: int
    _segmenter_lock: threading.Lock

    def segment(self, image: ImageLike, query: str) -> Segmentation: ...

    def _in_call(self) -> contextlib.AbstractContextManager[None]: ...

    def _encode(self, img: Frame) -> tuple[ImageEmbedding, dict[str, float]]: ...

    def _embedding_future(
        self, img: Frame, timings: dict[str, float]
    ) -> Future[tuple[ImageEmbedding, dict[str, float]]]: ...


@dataclass
class TrackedSegmentation(Segmentation):
    """What :meth:`Tracker.update` returns: a :class:`Segmentation` plus per-object tracking.

    Per tracked object ``i`` (the reasoner's ``i``-th object of the last reasoning), the same
    names as :class:`Segmentation`: ``object_masks[i]`` (H x W bool, empty when lost),
    ``objects[i]`` (``box`` the tight box of that mask in the box convention of
    :mod:`segzero_edge.types`, ``None`` when the mask is empty; no points),
    ``iou_predictions[i]`` (the decoder's IoU prediction of the chosen mask), and
    ``object_score_logits[i]`` (SAM2's object score logit, ``object_score_logits`` of
    ``SAM2Base._forward_sam_heads``: > 0 present, <= 0 lost). ``mask`` is their union.
    ``reasoned`` is True on frames where the reasoner ran (the seed, a requested or an
    automatic re-reasoning); ``query``, ``reasoning`` and ``answer_raw`` are those of the last
    reasoning. ``timings`` (seconds): ``sam_preprocess``, ``sam_encode``, ``memory_attention``,
    ``sam_decode``, ``memory_encode``, ``postprocess``, ``total`` (and the ``segment()``
    stages on reasoned frames).
    """

    frame_index: int = 0
    object_score_logits: list[float] = field(default_factory=list)
    reasoned: bool = False

    @property
    def present(self) -> list[bool]:
        """Per tracked object: SAM2's object score logit > 0."""
        return [s > 0 for s in self.object_score_logits]

    def describe(self) -> str:
        """What happened on this frame, in words: ``"frame 3 - tracking - object 1 present,
        object 2 lost"`` (``reasoned`` on the first frame, ``re-reasoned`` on a later one)."""
        if self.reasoned:
            what = "reasoned" if self.frame_index == 0 else "re-reasoned"
        else:
            what = "tracking"
        states = ", ".join(
            f"object {i + 1} {'present' if p else 'lost'}" for i, p in enumerate(self.present)
        )
        return f"frame {self.frame_index} - {what} - {states or 'no object'}"

    def plot(self, image: Any = None, **options: Any) -> np.ndarray:
        """:meth:`Segmentation.plot` with :meth:`describe` as the title (unless ``title`` is
        given); lost objects have no box and an empty mask, so only their state shows."""
        options.setdefault("title", self.describe())
        return super().plot(image, **options)

    def to_json(self, *, masks: bool = True) -> dict[str, Any]:
        """:meth:`Segmentation.to_json` plus ``frame_index``, ``reasoned``,
        ``object_score_logits`` and ``present``."""
        out = super().to_json(masks=masks)
        out["frame_index"] = int(self.frame_index)
        out["reasoned"] = bool(self.reasoned)
        out["object_score_logits"] = [float(v) for v in self.object_score_logits]
        out["present"] = [bool(p) for p in self.present]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackedSegmentation:
        """The tracked result :meth:`to_json` wrote (see :meth:`Segmentation.from_json`)."""
        base = Segmentation.from_json(data)
        fields = {f.name: getattr(base, f.name) for f in dataclass_fields(Segmentation)}
        return cls(
            **fields,
            frame_index=int(data.get("frame_index", 0)),
            reasoned=bool(data.get("reasoned", False)),
            object_score_logits=[float(v) for v in data.get("object_score_logits", [])],
        )


@dataclass
class _FrameMemory:
    """One frame's memory of one object: bfloat16 features ``[mem_dim, 64, 64]`` and pointer."""

    features: np.ndarray | None
    obj_ptr: np.ndarray


@dataclass
class _ObjectMemory:
    cond: dict[int, _FrameMemory] = field(default_factory=dict)
    non_cond: dict[int, _FrameMemory] = field(default_factory=dict)


def memory_frames(
    frame_idx: int, cond_frames: Iterable[int], non_cond: Container[int], config: TrackingConfig
) -> list[tuple[int, int]]:
    """``(t_pos, frame)`` of the memories frame ``frame_idx`` attends to, in SAM2's order.

    ``_prepare_memory_conditioned_features``: every conditioning frame with ``t_pos`` 0
    (``max_cond_frames_in_attn = -1``), then for ``t_pos = 1 .. num_maskmem - 1`` the frame
    ``num_maskmem - t_pos`` steps back (the previous frame, then every ``stride``-th), when
    it has a non-conditioning memory.
    """
    out = [(0, t) for t in cond_frames]
    stride = config.memory_temporal_stride_for_eval
    for t_pos in range(1, config.num_maskmem):
        t_rel = config.num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx - 1
        else:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        if prev in non_cond:
            out.append((t_pos, prev))
    return out


def pointer_frames(
    frame_idx: int,
    cond_frames: Iterable[int],
    non_cond: Container[int],
    config: TrackingConfig,
    num_frames: int | None = None,
) -> tuple[list[tuple[int, int]], int]:
    """``([(temporal distance, frame)], t_diff_max)`` of the object pointers frame
    ``frame_idx`` attends to (``_prepare_memory_conditioned_features``, forward in time):
    conditioning frames up to ``frame_idx``, then non-conditioning frames 1 ..
    ``max_obj_ptrs - 1`` back; ``max_obj_ptrs = min(num_frames, max_obj_ptrs_in_encoder)``.
    """
    limit = config.max_obj_ptrs_in_encoder
    if num_frames is not None:
        limit = min(num_frames, limit)
    out = [(frame_idx - t, t) for t in cond_frames if t <= frame_idx]
    for t_diff in range(1, limit):
        t = frame_idx - t_diff
        if t < 0 or (num_frames is not None and t >= num_frames):
            break
        if t in non_cond:
            out.append((t_diff, t))
    return out, limit - 1


def prune_memory(state: _ObjectMemory, t: int, config: TrackingConfig) -> None:
    """After frame ``t``, keep only what later frames can select: the features from the
    oldest frame ``t + 1`` attends to on, and the pointers of the last
    ``max_obj_ptrs_in_encoder - 1`` frames (the conditioning frame is kept whole)."""
    upcoming = memory_frames(t + 1, (), range(t + 1), config)
    oldest = min((f for _, f in upcoming), default=t)
    for f in list(state.non_cond):
        if f <= t - (config.max_obj_ptrs_in_encoder - 1):
            del state.non_cond[f]
        elif f < oldest:
            state.non_cond[f].features = None


def choose_output(
    masks: np.ndarray,
    iou: np.ndarray,
    n_points: int,
    is_init_cond_frame: bool,
    config: TrackingConfig,
) -> tuple[np.ndarray, float, int]:
    """``(low-res logits [256, 256], IoU, pointer token)`` from the decoder's four outputs.

    ``SAM2Base._use_multimask`` decides between the best multimask output (pointer from its
    token when ``use_multimask_token_for_obj_ptr``) and the single-mask output with SAM2.1's
    dynamic stability fallback (pointer from token 0), as ``_forward_sam_heads`` does.
    """
    multimask = (
        config.multimask_output_in_sam
        and (is_init_cond_frame or config.multimask_output_for_tracking)
        and config.multimask_min_pt_num <= n_points <= config.multimask_max_pt_num
    )
    if multimask:
        best = 1 + int(np.argmax(iou[0, 1:]))
        token = best if config.use_multimask_token_for_obj_ptr else 0
        return masks[0, best], float(iou[0, best]), token
    single, single_iou = select_masks(masks, iou, multimask_output=False)
    return single[0, 0], float(single_iou[0, 0]), 0


class Tracker:
    """Objects the reasoner found, tracked through frames with SAM2's memory.

    Made by :meth:`SegZeroEdge.track <segzero_edge.pipeline.SegZeroEdge.track>`; see the
    module docstring for what it mirrors. ``update`` is thread-safe (calls on one tracker are
    serialised; backends are shared with ``segment()`` under its locks).

    Options: ``rereason_after`` (re-run the reasoner on the frame after this many consecutive
    frames where some tracked object's score was <= ``score_threshold``, or none was found;
    ``None``: only when asked), ``score_threshold`` (object score logit, default 0.0, SAM2's
    present/absent line), ``num_frames`` (the clip length when known; see the module notes;
    frames past it are refused). Bad options raise ``ValueError`` naming the option.
    """

    def __init__(
        self,
        model: _Model,
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
        self._objects: list[_ObjectMemory] = []
        self._frame_index = 0
        self._seed_index = 0
        self._lost_frames = 0
        self.seed: Segmentation | None = None
        """The ``segment()`` result of the last reasoning."""
        self.last: TrackedSegmentation
        """The result of the latest frame (the seed frame at first)."""
        with self._lock, model._in_call():
            self._reason(load_frame(frame), query, 0)

    # -- public ---------------------------------------------------------------------------
    @property
    def frame_index(self) -> int:
        """Index of the latest frame (the seed frame is 0)."""
        return self._frame_index

    @property
    def num_objects(self) -> int:
        return len(self._objects)

    def update(self, frame: ImageLike, *, reason: bool = False) -> TrackedSegmentation:
        """The tracked objects on the next frame (``reason``: re-run the reasoner on it).

        Raises ``ValueError`` for a bad frame (or one past a clip of ``num_frames``),
        :class:`~segzero_edge.errors.BackendError` when a backend fails. A refused or failed
        frame changes nothing: the frame index, the objects and their memory stay those of the
        frames before it (a failed re-seed keeps the previous objects).
        """
        img = load_frame(frame)
        with self._lock:
            if self._memory is None:
                raise RuntimeError("this Tracker has been closed")
            with self._model._in_call():
                return self._next(img, reason)

    def _next(self, img: Frame, reason: bool) -> TrackedSegmentation:
        auto = self.rereason_after is not None and self._lost_frames >= self.rereason_after
        index = self._next_index()
        if not (reason or auto) and _hw(img) != self._hw:
            (h, w), (h0, w0) = _hw(img), self._hw
            raise ValueError(
                f"frame is {w} x {h} but the tracker follows a {w0} x {h0} video (SAM2's memory "
                "belongs to one frame size): pass reason=True to re-seed on the new size"
            )
        if reason or auto:
            return self._reason(img, self.query, index)
        return self._step(img, index)

    def reason(self, frame: ImageLike, query: str | None = None) -> TrackedSegmentation:
        """Re-run the reasoner on ``frame`` (for ``query``, default the current one) and
        re-seed the memory from its answer.

        Raises ``ValueError`` for a bad frame or query, :class:`~segzero_edge.errors.BackendError`
        when a backend fails; a refused or failed call changes nothing (the query, the frame
        index, the tracked objects and their memory stay as they were).
        """
        img = load_frame(frame)
        with self._lock:
            if self._memory is None:
                raise RuntimeError("this Tracker has been closed")
            with self._model._in_call():
                index = self._next_index()
                return self._reason(img, self.query if query is None else query, index)

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
    def _embedding(self, img: Frame, timings: dict[str, float]) -> ImageEmbedding:
        emb, enc_timings = self._model._encode(img)
        timings.update(enc_timings)
        return emb

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        with self._model._segmenter_lock:
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
        seeded: list[_ObjectMemory] = []
        outputs = []
        if objects:
            # segment() encoded this frame: reuse its cached embedding when there is one
            hit: dict[str, float] = {}
            emb, enc_timings = self._model._embedding_future(img, hit).result()
            if not (seg.sam_cache_hit or hit):  # not already counted by segment()
                timings.update(enc_timings)
            for obj in objects:  # the family's SAM2 prompt, as segment() prompts it
                p = self._model.family.sam2.for_object(obj)
                coords, labels = prompt_arrays(p.box, p.points, hw, labels=p.labels)
                out = self._decode(emb, coords, labels, True, timings)
                state = _ObjectMemory()
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
        outputs = []
        new = []
        if self._objects:
            emb = self._embedding(img, timings)
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
        self, emb: ImageEmbedding, state: _ObjectMemory, t: int, timings: dict[str, float]
    ) -> Any:
        cfg = self.config
        frames = memory_frames(t, state.cond, state.non_cond, cfg)
        mems = [state.cond[f] if tp == 0 else state.non_cond[f] for tp, f in frames]
        if any(m.features is None for m in mems):  # pruned too early: a bug, not bad input
            raise RuntimeError(f"memory features of frames {frames} were dropped")
        memory = np.stack([from_bfloat16(m.features) for m in mems if m.features is not None])
        tpos = np.asarray([tp for tp, _ in frames], dtype=np.float32)
        ptr_frames, t_diff_max = pointer_frames(
            t, state.cond, state.non_cond, cfg, self._clip_frames_left()
        )
        held = {**state.non_cond, **state.cond}
        ptrs = np.stack([held[f].obj_ptr for _, f in ptr_frames])
        # as torch: int64 distances / int t_diff_max, in float32
        dist = np.asarray([d for d, _ in ptr_frames], dtype=np.float32)
        ptr_tpos = dist / np.float32(t_diff_max)
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
    ) -> tuple[np.ndarray, float, float, np.ndarray]:
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
        logits = np.asarray(logits, dtype=np.float32)
        if self.config.pred_obj_scores and not score_f > 0:
            logits = np.full_like(logits, NO_OBJECT_SCORE)
        obj_ptr = np.asarray(ptr, dtype=np.float32).reshape(ptr.shape[-2], -1)[token].copy()
        timings["sam_decode"] = timings.get("sam_decode", 0.0) + time.perf_counter() - t0
        return logits, iou_best, score_f, obj_ptr

    def _remember(
        self,
        emb: ImageEmbedding,
        out: tuple[np.ndarray, float, float, np.ndarray],
        from_prompts: bool,
        timings: dict[str, float],
    ) -> _FrameMemory:
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
        return _FrameMemory(to_bfloat16(np.asarray(feats)[0]), obj_ptr)

    def _result(
        self,
        outputs: list[tuple[np.ndarray, float, float, np.ndarray]],
        img: Frame,
        timings: dict[str, float],
        t_start: float,
        frame_index: int,
        *,
        reasoned: bool,
    ) -> TrackedSegmentation:
        hw = _hw(img)
        h, w = hw
        t0 = time.perf_counter()
        masks = np.zeros((len(outputs), h, w), dtype=bool)
        boxes: list[Box | None] = []
        for i, (logits, _, _, _) in enumerate(outputs):
            res = pixels.postprocess_masks(logits, hw)
            masks[i] = res.mask
            # the kernels' tight box ends on the last pixel: the right/bottom edge is one on
            if res.box is None:
                boxes.append(None)
            else:
                x1, y1, x2, y2 = res.box
                boxes.append((x1, y1, x2 + 1, y2 + 1))
        timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        scores = [o[2] for o in outputs]
        present = [s > 0 and b is not None for s, b in zip(scores, boxes, strict=True)]
        return TrackedSegmentation(
            mask=masks.any(axis=0) if len(outputs) else np.zeros((h, w), dtype=bool),
            object_masks=masks,
            objects=[ObjectPrompt(box=b, points=()) for b in boxes],
            reasoning="",
            answer_raw="",
            status=Status.OK if any(present) else Status.NO_OBJECT,
            timings=timings,
            iou_predictions=[o[1] for o in outputs],
            frame_index=frame_index,
            object_score_logits=scores,
            reasoned=reasoned,
            image=None if isinstance(img, NV12Frame) and img.on_device else img,
        )

    def _commit(self, result: TrackedSegmentation) -> None:
        """``result`` becomes :attr:`last`; count it as lost or not for ``rereason_after``."""
        lost = not result.object_score_logits or any(
            s <= self.score_threshold for s in result.object_score_logits
        )
        self._lost_frames = self._lost_frames + 1 if lost else 0
        self.last = result


__all__ = [
    "NO_OBJECT_SCORE",
    "TrackedSegmentation",
    "Tracker",
    "choose_output",
    "memory_frames",
    "pointer_frames",
    "prune_memory",
]


def _hw(frame: Frame) -> tuple[int, int]:
    """(height, width) of an RGB array or an NV12 frame."""
    return frame.hw if isinstance(frame, NV12Frame) else (frame.shape[0], frame.shape[1])
