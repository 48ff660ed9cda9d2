"""What one tracked frame gives (:class:`TrackedSegmentation`) and the one rule for "object
present" (:func:`object_present`), which its ``present``, its ``status`` and the tracker's
lost-frame count (``rereason_after``) all use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np

from .. import pixels
from ..types import Box, ObjectPrompt, Segmentation, Status


def object_present(score_logit: float, box: Box | None, score_threshold: float = 0.0) -> bool:
    """Whether a tracked object is present: SAM2's object score logit is above
    ``score_threshold`` (0.0: SAM2's own present/absent line, ``object_score_logits > 0`` in
    ``SAM2Base._forward_sam_heads``) **and** its mask is not empty (``box`` is its tight box,
    ``None`` for an empty mask), so a present object always has a box and a mask. A NaN score
    is not present."""
    return box is not None and score_logit > score_threshold


@dataclass
class TrackedSegmentation(Segmentation):
    """What :meth:`Tracker.update <segzero_edge.tracker.Tracker.update>` returns: a
    :class:`Segmentation` plus per-object tracking.

    Per tracked object ``i`` (the reasoner's ``i``-th object of the last reasoning), the same
    names as :class:`Segmentation`: ``object_masks[i]`` (H x W bool, empty when lost),
    ``objects[i]`` (an :class:`~segzero_edge.types.ObjectPrompt` in image pixels that
    prompted nothing: ``box`` the tight box of that mask in the box convention of
    :mod:`segzero_edge.types`, ``None`` when the mask is empty; no points),
    ``iou_predictions[i]`` (the decoder's IoU prediction of the chosen mask), and
    ``object_score_logits[i]`` (SAM2's object score logit, ``object_score_logits`` of
    ``SAM2Base._forward_sam_heads``). ``present[i]`` is :func:`object_present` of them with the
    tracker's ``score_threshold``; ``status`` is ``OK`` when some object is present.
    ``mask`` is the union of the masks. ``reasoned`` is True on frames where the reasoner ran
    (the seed, a requested or an automatic re-reasoning); ``query``, ``reasoning`` and
    ``answer_raw`` are those of the last reasoning. ``timings`` (seconds): ``sam_preprocess``,
    ``sam_encode``, ``memory_attention``, ``sam_decode``, ``memory_encode``, ``postprocess``,
    ``total`` (and the ``segment()`` stages on reasoned frames).
    """

    frame_index: int = 0
    object_score_logits: list[float] = field(default_factory=list)
    reasoned: bool = False
    score_threshold: float = 0.0

    @property
    def present(self) -> list[bool]:
        """Per tracked object: :func:`object_present` (score above ``score_threshold`` and a
        non-empty mask)."""
        return [
            object_present(s, o.box, self.score_threshold)
            for s, o in zip(self.object_score_logits, self.objects, strict=True)
        ]

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
        ``object_score_logits``, ``score_threshold`` and ``present``."""
        out = super().to_json(masks=masks)
        out["frame_index"] = int(self.frame_index)
        out["reasoned"] = bool(self.reasoned)
        out["object_score_logits"] = [float(v) for v in self.object_score_logits]
        out["score_threshold"] = float(self.score_threshold)
        out["present"] = [bool(p) for p in self.present]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackedSegmentation:
        """The tracked result :meth:`to_json` wrote (see :meth:`Segmentation.from_json`);
        ``present`` is recomputed from the scores, boxes and ``score_threshold`` (0.0 when the
        file has none). ``ValueError`` for a ``score_threshold`` that is not a finite number
        or a score count other than the object count."""
        base = Segmentation.from_json(data)
        fields = {f.name: getattr(base, f.name) for f in dataclass_fields(Segmentation)}
        scores = [float(v) for v in data.get("object_score_logits", [])]
        if len(scores) != len(base.objects):
            raise ValueError(
                f"object_score_logits has {len(scores)} values for {len(base.objects)} objects"
            )
        threshold = data.get("score_threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"score_threshold must be a number, got {threshold!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"score_threshold must be finite, got {threshold!r}")
        return cls(
            **fields,
            frame_index=int(data.get("frame_index", 0)),
            reasoned=bool(data.get("reasoned", False)),
            object_score_logits=scores,
            score_threshold=float(threshold),
        )


def tracked_frame(
    logits: Sequence[np.ndarray],
    iou_predictions: Sequence[float],
    object_score_logits: Sequence[float],
    hw: tuple[int, int],
    *,
    frame_index: int,
    reasoned: bool,
    score_threshold: float,
) -> TrackedSegmentation:
    """The result of one tracked frame from each object's chosen low-res logits
    (``[256, 256]`` float32, SAM2's ``NO_OBJ_SCORE`` gating applied), IoU prediction and object
    score logit: the masks upsampled to ``hw = (H, W)`` and > 0 (SAM2's post-processing, the
    pixel kernels), each object's tight box (``None`` for an empty mask), ``status`` ``OK``
    when some object is :func:`object_present`, else ``NO_OBJECT``. No reasoning, timings or
    image (the tracker fills them)."""
    h, w = hw
    masks = np.zeros((len(logits), h, w), dtype=bool)
    boxes: list[Box | None] = []
    for i, lg in enumerate(logits):
        res = pixels.postprocess_masks(lg, hw)
        masks[i] = res.mask
        # the kernels' tight box ends on the last pixel: the right/bottom edge is one on
        if res.box is None:
            boxes.append(None)
        else:
            x1, y1, x2, y2 = res.box
            boxes.append((x1, y1, x2 + 1, y2 + 1))
    scores = [float(s) for s in object_score_logits]
    present = [object_present(s, b, score_threshold) for s, b in zip(scores, boxes, strict=True)]
    return TrackedSegmentation(
        mask=np.asarray(masks.any(axis=0), dtype=bool),  # N = 0: all False
        object_masks=masks,
        objects=[ObjectPrompt(box=b, points=()) for b in boxes],
        reasoning="",
        answer_raw="",
        status=Status.OK if any(present) else Status.NO_OBJECT,
        iou_predictions=[float(v) for v in iou_predictions],
        frame_index=frame_index,
        object_score_logits=scores,
        reasoned=reasoned,
        score_threshold=score_threshold,
    )


__all__ = ["TrackedSegmentation", "object_present", "tracked_frame"]
