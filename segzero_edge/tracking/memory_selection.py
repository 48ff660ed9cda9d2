"""SAM2's memory-selection rules as pure functions: which past frames and object pointers a
frame attends to, which conditioning frames are chosen, which decoder output is kept.

Each function is one rule of Meta's sam2 1.1.0, named in its docstring, forward in time
(``track_in_reverse=False``) and in evaluation (``training=False``), and is checked against
Meta's own code over many cases (tests/test_tracking_memory.py):

* :func:`select_cond_frames`: ``sam2_utils.select_closest_cond_frames``.
* :func:`memory_frames`, :func:`pointer_frames`, :func:`pointer_tpos`: the frame and
  pointer choices of ``SAM2Base._prepare_memory_conditioned_features``.
* :func:`use_multimask`, :func:`choose_output`: ``SAM2Base._use_multimask`` and the output
  choice of ``SAM2Base._forward_sam_heads``.
* :func:`gate_no_object`: the ``NO_OBJ_SCORE`` masking of ``_forward_sam_heads``.

:class:`FrameMemory` / :class:`ObjectMemory` hold what one object remembers; :func:`prune_memory`
drops what no later frame can select, so the memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..segmenter.memory import TrackingConfig
from ..segmenter.select import select_masks

NO_OBJECT_SCORE = -1024.0
"""Mask logit SAM2 writes where the object score says the object is absent (NO_OBJ_SCORE)."""
MAX_COND_FRAMES_IN_ATTN = -1
"""``SAM2Base.max_cond_frames_in_attn`` of every SAM2 config: all conditioning frames."""
PAD_COORDS = np.zeros((1, 1, 2), dtype=np.float32)
PAD_LABELS = -np.ones((1, 1), dtype=np.float32)
"""The decoder prompt of a frame without prompts: one padding point (``_forward_sam_heads``)."""


@dataclass
class FrameMemory:
    """One frame's memory of one object: bfloat16 bits of the memory features
    ``[mem_dim, 64, 64]`` uint16 (``None`` once no later frame attends to them) and the object
    pointer ``[hidden_dim]`` float32."""

    features: np.ndarray | None
    obj_ptr: np.ndarray


@dataclass
class ObjectMemory:
    """One object's memories by frame index: ``cond`` the conditioning (prompted) frames,
    ``non_cond`` the tracked ones (SAM2's ``cond_frame_outputs`` / ``non_cond_frame_outputs``)."""

    cond: dict[int, FrameMemory] = field(default_factory=dict)
    non_cond: dict[int, FrameMemory] = field(default_factory=dict)

    def held(self, frame: int) -> FrameMemory:
        """The memory of ``frame``: a tracked frame's, else a conditioning frame's (SAM2 reads
        an unselected conditioning frame as a non-conditioning one). ``KeyError`` if neither."""
        mem = self.non_cond.get(frame)
        return self.cond[frame] if mem is None else mem


def select_cond_frames(
    frame_idx: int, cond_frames: Iterable[int], max_cond_frame_num: int = MAX_COND_FRAMES_IN_ATTN
) -> tuple[list[int], list[int]]:
    """``(selected, unselected)`` conditioning frames for frame ``frame_idx``, in SAM2's order.

    ``sam2_utils.select_closest_cond_frames``: all of them when ``max_cond_frame_num`` is -1
    or not exceeded; else the closest one before ``frame_idx``, the closest one at or after
    it, then the others by distance (stable) up to ``max_cond_frame_num`` (>= 2).

    Raises:
        ValueError: ``max_cond_frame_num`` is 0 or 1 (SAM2 asserts at least 2).
    """
    frames = list(cond_frames)
    if max_cond_frame_num == -1 or len(frames) <= max_cond_frame_num:
        return frames, []
    if max_cond_frame_num < 2:
        raise ValueError(f"max_cond_frame_num must be -1 or >= 2, got {max_cond_frame_num}")
    selected: list[int] = []
    before = max((t for t in frames if t < frame_idx), default=None)
    if before is not None:
        selected.append(before)
    after = min((t for t in frames if t >= frame_idx), default=None)
    if after is not None and after not in selected:
        selected.append(after)
    rest = sorted((t for t in frames if t not in selected), key=lambda t: abs(t - frame_idx))
    selected.extend(rest[: max_cond_frame_num - len(selected)])
    return selected, [t for t in frames if t not in selected]


def memory_frames(
    frame_idx: int,
    cond_frames: Iterable[int],
    non_cond: Container[int],
    config: TrackingConfig,
    max_cond_frame_num: int = MAX_COND_FRAMES_IN_ATTN,
) -> list[tuple[int, int]]:
    """``(t_pos, frame)`` of the memories frame ``frame_idx`` attends to, in SAM2's order.

    ``_prepare_memory_conditioned_features``: every selected conditioning frame
    (:func:`select_cond_frames`) with ``t_pos`` 0, then for ``t_pos = 1 .. num_maskmem - 1``
    the frame ``num_maskmem - t_pos`` steps back (the previous frame, then every
    ``memory_temporal_stride_for_eval``-th), when it has a non-conditioning memory or is an
    unselected conditioning frame.
    """
    selected, unselected = select_cond_frames(frame_idx, cond_frames, max_cond_frame_num)
    out = [(0, t) for t in selected]
    stride = config.memory_temporal_stride_for_eval
    for t_pos in range(1, config.num_maskmem):
        t_rel = config.num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx - 1
        else:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        if prev in non_cond or prev in unselected:
            out.append((t_pos, prev))
    return out


def pointer_frames(
    frame_idx: int,
    cond_frames: Iterable[int],
    non_cond: Container[int],
    config: TrackingConfig,
    num_frames: int | None = None,
    max_cond_frame_num: int = MAX_COND_FRAMES_IN_ATTN,
) -> tuple[list[tuple[int, int]], int]:
    """``([(temporal distance, frame)], t_diff_max)`` of the object pointers frame
    ``frame_idx`` attends to (``_prepare_memory_conditioned_features``).

    The selected conditioning frames up to ``frame_idx`` (``only_obj_ptrs_in_the_past_for_eval``)
    at their signed distance, then the frames 1 .. ``max_obj_ptrs - 1`` back that have a
    non-conditioning memory or are unselected conditioning frames, with
    ``max_obj_ptrs = min(num_frames, max_obj_ptrs_in_encoder)`` (``num_frames`` ``None``: a live
    stream, no clip bound) and ``t_diff_max = max_obj_ptrs - 1``.
    """
    limit = config.max_obj_ptrs_in_encoder
    if num_frames is not None:
        limit = min(num_frames, limit)
    selected, unselected = select_cond_frames(frame_idx, cond_frames, max_cond_frame_num)
    out = [(frame_idx - t, t) for t in selected if t <= frame_idx]
    for t_diff in range(1, limit):
        t = frame_idx - t_diff
        if t < 0 or (num_frames is not None and t >= num_frames):
            break
        if t in non_cond or t in unselected:
            out.append((t_diff, t))
    return out, limit - 1


def pointer_tpos(distances: Iterable[int], t_diff_max: int) -> np.ndarray:
    """The pointers' temporal positions ``distance / t_diff_max`` as float32 ``[M]``, as SAM2
    divides its int64 distance tensor by the int ``t_diff_max`` before ``get_1d_sine_pe``."""
    tpos: np.ndarray = np.asarray(list(distances), dtype=np.float32) / np.float32(t_diff_max)
    return tpos


def prune_memory(state: ObjectMemory, t: int, config: TrackingConfig) -> None:
    """After frame ``t``, keep only what later frames can select: the features from the
    oldest frame ``t + 1`` attends to on, and the pointers of the last
    ``max_obj_ptrs_in_encoder - 1`` frames (the conditioning frames are kept whole)."""
    upcoming = memory_frames(t + 1, (), range(t + 1), config)
    oldest = min((f for _, f in upcoming), default=t)
    for f in list(state.non_cond):
        if f <= t - (config.max_obj_ptrs_in_encoder - 1):
            del state.non_cond[f]
        elif f < oldest:
            state.non_cond[f].features = None


def use_multimask(config: TrackingConfig, is_init_cond_frame: bool, n_points: int) -> bool:
    """``SAM2Base._use_multimask``: the three multimask outputs (True) or the single one, for a
    frame with ``n_points`` prompt points (box corners included; 0 for a tracked frame)."""
    return (
        config.multimask_output_in_sam
        and (is_init_cond_frame or config.multimask_output_for_tracking)
        and config.multimask_min_pt_num <= n_points <= config.multimask_max_pt_num
    )


def choose_output(
    masks: np.ndarray,
    iou: np.ndarray,
    n_points: int,
    is_init_cond_frame: bool,
    config: TrackingConfig,
) -> tuple[np.ndarray, float, int]:
    """``(low-res logits [256, 256], IoU, pointer token)`` from the decoder's four outputs
    (``masks [1, 4, 256, 256]``, ``iou [1, 4]``).

    :func:`use_multimask` decides between the best multimask output (pointer from its token
    when ``use_multimask_token_for_obj_ptr``) and the single-mask output with SAM2.1's dynamic
    stability fallback (pointer from token 0), as ``_forward_sam_heads`` does.
    """
    if use_multimask(config, is_init_cond_frame, n_points):
        best = 1 + int(np.argmax(iou[0, 1:]))
        token = best if config.use_multimask_token_for_obj_ptr else 0
        return masks[0, best], float(iou[0, best]), token
    single, single_iou = select_masks(masks, iou, multimask_output=False)
    return single[0, 0], float(single_iou[0, 0]), 0


def gate_no_object(logits: np.ndarray, score: float, config: TrackingConfig) -> np.ndarray:
    """``logits`` as float32, all :data:`NO_OBJECT_SCORE` when ``pred_obj_scores`` and the
    object score logit is not > 0 (``_forward_sam_heads``; this is SAM2's memory rule, not the
    reported "present", which is :func:`~segzero_edge.tracking.result.object_present`)."""
    out = np.asarray(logits, dtype=np.float32)
    if config.pred_obj_scores and not score > 0:
        return np.full_like(out, NO_OBJECT_SCORE)
    return out


__all__ = [
    "MAX_COND_FRAMES_IN_ATTN",
    "NO_OBJECT_SCORE",
    "PAD_COORDS",
    "PAD_LABELS",
    "FrameMemory",
    "ObjectMemory",
    "choose_output",
    "gate_no_object",
    "memory_frames",
    "pointer_frames",
    "pointer_tpos",
    "prune_memory",
    "select_cond_frames",
    "use_multimask",
]
