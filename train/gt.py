"""Ground truth (box + point) from a binary mask, in the reasoner's 840 x 840 frame (or any
square ``frame``, e.g. Qwen3-VL's 0-1000 grid).

- box: the tight box ``(x1, y1, x2, y2)`` of the mask's pixels (inclusive pixel indices);
- point: the centre of the largest inscribed circle, i.e. the argmax of the Euclidean distance
  transform of the mask (the mask is padded with background first, so the image border counts
  as a boundary); ties go to the first pixel in row-major order. It is a mask pixel by
  construction (snapped onto the mask);
- both scaled into the frame with ``int(v * 840 / W + 0.5)`` (x) and ``int(v * 840 / H + 0.5)``
  (y), clamped to ``[0, 839]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segzero_edge.layout import REASONER_SIZE

from .rewards import GroundTruth


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H x W), got shape {m.shape}")
    if m.dtype == np.uint8:
        return m == 1  # 255 (ignore) is not foreground
    return m.astype(bool)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive ``(x1, y1, x2, y2)`` pixel box of the mask; ``None`` when empty."""
    m = _as_bool_mask(mask)
    ys = np.flatnonzero(m.any(axis=1))
    xs = np.flatnonzero(m.any(axis=0))
    if ys.size == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def inscribed_point(mask: np.ndarray) -> tuple[int, int] | None:
    """``(x, y)`` of the mask pixel farthest from the background; ``None`` when empty."""
    from scipy.ndimage import distance_transform_edt

    m = _as_bool_mask(mask)
    if not m.any():
        return None
    dist = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    if not m[y, x]:  # cannot happen (distance is 0 off the mask); keep the guarantee explicit
        ys, xs = np.nonzero(m)
        k = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
        y, x = ys[k], xs[k]
    return int(x), int(y)


def to_frame(v: float, size: int, frame: int = REASONER_SIZE) -> int:
    """An image coordinate along an axis of ``size`` pixels into the ``frame`` square."""
    return min(max(int(v * frame / size + 0.5), 0), frame - 1)


def rescale_ground_truth(gt: GroundTruth, source: int, target: int) -> GroundTruth:
    """``gt`` from the square frame of side ``source`` into the one of side ``target`` (e.g.
    the 840 frame of Seg-Zero's released sets into Qwen3-VL's 0-1000 grid): every coordinate
    through :func:`to_frame`, ``int(v * target / source + 0.5)`` clamped to
    ``[0, target - 1]``. Returns ``gt`` itself when the frames are equal; ``ValueError`` for a
    side that is not > 0."""
    if source <= 0 or target <= 0:
        raise ValueError(f"frame sides must be > 0, got {source} -> {target}")
    if source == target:
        return gt
    return GroundTruth(
        boxes=[[to_frame(v, source, target) for v in b] for b in gt.boxes],
        points=[[to_frame(v, source, target) for v in p] for p in gt.points],
    )


def object_in_frame(
    mask: np.ndarray, frame: int = REASONER_SIZE
) -> tuple[tuple[int, int, int, int], tuple[int, int]] | None:
    """(box, point) of one mask in the frame; ``None`` for an empty mask."""
    m = _as_bool_mask(mask)
    box, point = tight_box(m), inscribed_point(m)
    if box is None or point is None:
        return None
    h, w = m.shape
    x1, y1, x2, y2 = box
    fbox = (to_frame(x1, w, frame), to_frame(y1, h, frame))
    fbox2 = (to_frame(x2, w, frame), to_frame(y2, h, frame))
    return (*fbox, *fbox2), (to_frame(point[0], w, frame), to_frame(point[1], h, frame))


def ground_truth_from_mask(mask: np.ndarray, frame: int = REASONER_SIZE) -> GroundTruth:
    """One object (the whole mask); an empty mask gives an empty :class:`GroundTruth`."""
    obj = object_in_frame(mask, frame)
    if obj is None:
        return GroundTruth(boxes=[], points=[])
    return GroundTruth(boxes=[obj[0]], points=[obj[1]])


def ground_truth_from_masks(masks: Sequence[np.ndarray], frame: int = REASONER_SIZE) -> GroundTruth:
    """One object per (non-empty) instance mask, in order: for the multi-object reward."""
    boxes, points = [], []
    for m in masks:
        obj = object_in_frame(m, frame)
        if obj is not None:
            boxes.append(obj[0])
            points.append(obj[1])
    return GroundTruth(boxes=boxes, points=points)


__all__ = [
    "ground_truth_from_mask",
    "ground_truth_from_masks",
    "inscribed_point",
    "object_in_frame",
    "rescale_ground_truth",
    "tight_box",
    "to_frame",
]
