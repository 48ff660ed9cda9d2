"""Seg-Zero's rewards (its veRL reward code): the five-term single-object set and the
multi-object set.

Every function takes the generated text and a :class:`GroundTruth` in the frame the model's
answers use (pixels of the 840 x 840 resize for Qwen2.5-VL; Qwen3-VL's 0-1000 grid per axis) and
returns floats; malformed, truncated or empty generations give 0 for the terms they affect and
never raise.

The distance thresholds (box L1 < 10, point distance < 100 or < 30) are pixels of the model's
resize. Answers on a grid that is not the resize's pixels pass ``units_per_pixel`` (answer units
per pixel of the resize, ``ModelFamily.coord_span / ModelFamily.resize_size``: 1000 / 832 for the
``qwen3vl-grounding`` family, 1 for Qwen2.5-VL) and every threshold is scaled by it, so it keeps
its meaning in pixels. The IoU threshold has no unit.

Single object (``segzero_rewards``, max 5, each term 0 or 1):

- ``think_format``: ``<think>.*?</think>\\s*<answer>.*?</answer>`` must match the whole text.
- ``answer_format``: strict by default: the ``<answer>`` body is exactly a JSON list of
  ``{"bbox_2d": [4 numbers], "point_2d": [2 numbers]}`` (no other keys, at least one item), or
  the first release's ``{"bbox": [4], "points_1": [2], "points_2": [2]}``. ``strict=False``
  takes the soft rule: the first ``{...}`` of the answer (of the whole text without answer tags)
  decodes and has a ``*bbox*`` key with 4 numbers and a ``*point*`` key with 2 numbers.
- ``box_iou``: IoU of the first predicted box with the ground-truth box > 0.5, areas counted
  inclusively (``(x2 - x1 + 1) * (y2 - y1 + 1)``, intersection ``max(0, ... + 1)``).
- ``box_l1``: mean absolute difference of the 4 coordinates < 10 px.
- ``points``: every point of the first predicted object lies inside its box (inclusive) AND the
  mean Euclidean distance to the ground-truth points under the best pairing (Hungarian; over
  ``min(M, N)`` pairs) is < 100 px.

The single-object target is the whole ground truth: with several boxes their union box is used.

Multi object (``multi_object_rewards``, max 7):

- ``think_format`` (0/1) as above.
- ``item_format`` (0..2): the answer body is a JSON list; each item earns +1 for a ``bbox_2d``
  list of 4 numbers and +1 for a ``point_2d`` list of 2 numbers; the sum is divided by the
  item count (an empty list or a non-list scores 0).
- ``accuracy`` (0..3): indicator matrices IoU > 0.5, box L1 < 10, point distance < 30 and the
  point inside its own box; ``cost = 3 - sum``; Hungarian matching; ``sum over matched
  (3 - cost) / max(M, N)``. Any item without a valid box and point makes the answer
  unparseable for accuracy (0), as in the reference code. No prediction and no ground truth
  (``M = N = 0``) scores 3.
- ``non_repeat`` (0/1): the text split on ``.`` (stripped, empty parts dropped); 0 when more
  than ``allowed_repeats`` parts repeat an earlier one (default 0: any repeat gives 0; the public
  VisionReasoner code tolerates one repeat, ``allowed_repeats=1``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segzero_edge.answer import AnswerObject, answer_body, answer_json, numbers, parse_answer
from segzero_edge.types import Status

Box = tuple[float, float, float, float]
Point = tuple[float, float]

THINK_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
FIRST_OBJECT_RE = re.compile(r"\{[^{}]*\}", re.DOTALL)

IOU_THRESHOLD = 0.5
BOX_L1_THRESHOLD = 10.0
POINT_THRESHOLD_SINGLE = 100.0
POINT_THRESHOLD_MULTI = 30.0

SEGZERO_TERMS = ("think_format", "answer_format", "box_iou", "box_l1", "points")
MULTI_OBJECT_TERMS = ("think_format", "item_format", "accuracy", "non_repeat")
V2_KEYS = frozenset({"bbox_2d", "point_2d"})
V1_KEYS = frozenset({"bbox", "points_1", "points_2"})


def _coord_tuple(value: Any, n: int, what: str) -> tuple[float, ...]:
    out = numbers(value, n)
    if out is None:
        raise ValueError(f"ground truth {what} must be {n} finite numbers, got {value!r}")
    return tuple(int(v) if float(v).is_integer() else float(v) for v in out)


@dataclass
class GroundTruth:
    """Ground truth in the answer's frame (840 x 840 pixels for Qwen2.5-VL, the 0-1000 grid for
    Qwen3-VL): one box per object and the objects' points.

    For the multi-object reward ``points[i]`` belongs to ``boxes[i]``; the single-object reward
    treats everything as one target (union box, all points).
    """

    boxes: Sequence[Sequence[float]] = field(default_factory=list)
    points: Sequence[Sequence[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = [_coord_tuple(b, 4, "box") for b in self.boxes]  # type: ignore[misc]
        self.points = [_coord_tuple(p, 2, "point") for p in self.points]  # type: ignore[misc]

    @property
    def union_box(self) -> Box | None:
        """The box holding every ground-truth box, ``None`` without boxes."""
        if not self.boxes:
            return None
        b = np.asarray(self.boxes, dtype=np.float64)
        return (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


# --------------------------------------------------------------------------- parsing
# One parser for runtime, eval and rewards (segzero_edge.answer), here in its strict mode:
# the first <answer> body through json.loads, as Seg-Zero's reward code reads it.


def predicted_objects(text: str) -> list[AnswerObject] | None:
    """Objects of the first ``<answer>`` JSON (list or single dict); ``None`` when it does not
    parse (``segzero_edge.answer.parse_answer`` with ``strict=True``).

    Items without a valid box are dropped; an answer with no valid item at all gives ``None``
    unless it is the empty list.
    """
    parsed = parse_answer(text, strict=True) if isinstance(text, str) else None
    if parsed is None or parsed.status not in (Status.OK, Status.NO_OBJECT):
        return None
    return list(parsed.objects)


# --------------------------------------------------------------------------- geometry


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with inclusive pixel areas; 0 for an inverted (x2 < x1 or y2 < y1) box."""
    if a[2] < a[0] or a[3] < a[1] or b[2] < b[0] or b[3] < b[1]:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(inter / (area_a + area_b - inter))


def box_l1(a: Sequence[float], b: Sequence[float]) -> float:
    """Mean absolute difference of the four coordinates."""
    return float(sum(abs(x - y) for x, y in zip(a, b, strict=True)) / 4)


def point_in_box(p: Sequence[float], box: Sequence[float]) -> bool:
    """Inclusive: points on the border are inside."""
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _distance_matrix(p: Any, q: Any) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(q, dtype=np.float64).reshape(-1, 2)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def matched_point_distance(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """Mean Euclidean distance under the best pairing of ``min(M, N)`` points; inf if none."""
    if not len(pred) or not len(gt):
        return math.inf
    from scipy.optimize import linear_sum_assignment

    d = _distance_matrix(pred, gt)
    rows, cols = linear_sum_assignment(d)
    return float(d[rows, cols].mean())


# --------------------------------------------------------------------------- single object


def think_format_reward(text: str) -> float:
    """1 when the whole text is ``<think>…</think>`` then ``<answer>…</answer>``."""
    return float(isinstance(text, str) and THINK_FORMAT_RE.fullmatch(text) is not None)


def _strict_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    keys = set(item)
    if keys == V2_KEYS:
        return numbers(item["bbox_2d"], 4) is not None and numbers(item["point_2d"], 2) is not None
    if keys == V1_KEYS:
        return numbers(item["bbox"], 4) is not None and all(
            numbers(item[k], 2) is not None for k in ("points_1", "points_2")
        )
    return False


def answer_format_strict(text: str) -> float:
    """1 when the answer body is exactly the v2 list schema (or the v1 single dict)."""
    ok, value = answer_json(text)
    if not ok:
        return 0.0
    if isinstance(value, list):
        return float(bool(value) and all(_strict_item(i) and set(i) == V2_KEYS for i in value))
    return float(isinstance(value, dict) and set(value) == V1_KEYS and _strict_item(value))


def answer_format_soft(text: str) -> float:
    """1 when the first ``{...}`` has a ``*bbox*`` key of 4 numbers and a ``*point*`` key of 2."""
    if not isinstance(text, str):
        return 0.0
    body = answer_body(text)
    m = FIRST_OBJECT_RE.search(text if body is None else body)
    if m is None:
        return 0.0
    try:
        data = json.loads(m.group(0))
    except (ValueError, RecursionError):
        return 0.0
    if not isinstance(data, dict):
        return 0.0
    box_keys = [k for k in data if "bbox" in k.lower()]
    point_keys = [k for k in data if "point" in k.lower()]
    if not box_keys or not point_keys or numbers(data[box_keys[0]], 4) is None:
        return 0.0
    return float(all(numbers(data[k], 2) is not None for k in point_keys))


def check_units_per_pixel(units_per_pixel: float) -> float:
    """``units_per_pixel`` as a float; ``ValueError`` unless it is a finite number > 0."""
    try:
        u = float(units_per_pixel)
    except (TypeError, ValueError):
        u = math.nan
    if not math.isfinite(u) or u <= 0:
        raise ValueError(f"units_per_pixel must be a finite number > 0, got {units_per_pixel!r}")
    return u


def segzero_rewards(
    text: str, gt: GroundTruth, *, strict: bool = True, units_per_pixel: float = 1.0
) -> dict[str, float]:
    """Seg-Zero's five terms plus ``total`` (max 5). See the module docstring; ``units_per_pixel``
    scales the L1 and point thresholds (pixels of the model's frame) into the answer's units.
    Raises ``ValueError`` for a ``units_per_pixel`` that is not a finite number > 0."""
    u = check_units_per_pixel(units_per_pixel)
    if not isinstance(text, str):
        text = ""
    out = {
        "think_format": think_format_reward(text),
        "answer_format": answer_format_strict(text) if strict else answer_format_soft(text),
        "box_iou": 0.0,
        "box_l1": 0.0,
        "points": 0.0,
    }
    objs = predicted_objects(text)
    gt_box = gt.union_box
    if objs and gt_box is not None:
        pred = objs[0]
        out["box_iou"] = float(box_iou(pred.box, gt_box) > IOU_THRESHOLD)
        out["box_l1"] = float(box_l1(pred.box, gt_box) < BOX_L1_THRESHOLD * u)
        inside = bool(pred.points) and all(point_in_box(p, pred.box) for p in pred.points)
        dist = matched_point_distance(pred.points, gt.points)
        out["points"] = float(inside and dist < POINT_THRESHOLD_SINGLE * u)
    out["total"] = float(sum(out.values()))
    return out


# --------------------------------------------------------------------------- multi object


def item_format_reward(text: str) -> float:
    """Per item +1 for ``bbox_2d`` (4 numbers) and +1 for ``point_2d`` (2 numbers), / items."""
    ok, value = answer_json(text)
    if not ok or not isinstance(value, list) or not value:
        return 0.0
    score = 0.0
    for item in value:
        if not isinstance(item, dict):
            continue
        score += numbers(item.get("bbox_2d"), 4) is not None
        score += numbers(item.get("point_2d"), 2) is not None
    return score / len(value)


def _multi_predictions(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(M, 4) boxes and (M, 2) points; ``None`` unless every item has a box and a point."""
    ok, value = answer_json(text)
    if not ok or not isinstance(value, list):
        return None
    boxes, points = [], []
    for item in value:
        if not isinstance(item, dict):
            return None
        b, p = numbers(item.get("bbox_2d"), 4), numbers(item.get("point_2d"), 2)
        if b is None or p is None:
            return None
        boxes.append(b)
        points.append(p)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(points, np.float64).reshape(
        -1, 2
    )


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[box_iou(x, y) for y in b] for x in a], dtype=np.float64).reshape(
        len(a), len(b)
    )


def multi_object_accuracy(text: str, gt: GroundTruth, *, units_per_pixel: float = 1.0) -> float:
    """Hungarian-matched accuracy in 0..3 (see the module docstring; ``units_per_pixel`` scales
    the L1 and point thresholds)."""
    from scipy.optimize import linear_sum_assignment

    u = check_units_per_pixel(units_per_pixel)
    parsed = _multi_predictions(text)
    if parsed is None:
        return 0.0
    boxes, points = parsed
    if len(gt.points) != len(gt.boxes):
        raise ValueError(
            f"multi-object ground truth needs one point per box: {len(gt.boxes)} boxes, "
            f"{len(gt.points)} points"
        )
    gt_boxes = np.asarray(gt.boxes, np.float64).reshape(-1, 4)
    gt_points = np.asarray(gt.points, np.float64).reshape(-1, 2)
    m, n = len(boxes), len(gt_boxes)
    if m == 0 and n == 0:
        return 3.0
    if m == 0 or n == 0:
        return 0.0
    iou_ok = _iou_matrix(boxes, gt_boxes) > IOU_THRESHOLD
    l1_ok = np.abs(boxes[:, None, :] - gt_boxes[None, :, :]).mean(-1) < BOX_L1_THRESHOLD * u
    inside = np.array([point_in_box(p, b) for p, b in zip(points, boxes, strict=True)])
    near = _distance_matrix(points, gt_points) < POINT_THRESHOLD_MULTI * u
    point_ok = near & inside[:, None]
    cost = 3.0 - (iou_ok.astype(float) + l1_ok + point_ok)
    rows, cols = linear_sum_assignment(cost)
    return float((3.0 - cost[rows, cols]).sum() / max(m, n))


def non_repeat_reward(text: str, allowed_repeats: int = 0) -> float:
    """0 when more than ``allowed_repeats`` '.'-separated sentences repeat an earlier one."""
    if not isinstance(text, str):
        return 0.0
    seen: set[str] = set()
    repeats = 0
    for sentence in (s.strip() for s in text.split(".")):
        if not sentence:
            continue
        if sentence in seen:
            repeats += 1
            if repeats > allowed_repeats:
                return 0.0
        seen.add(sentence)
    return 1.0


def multi_object_rewards(
    text: str, gt: GroundTruth, *, allowed_repeats: int = 0, units_per_pixel: float = 1.0
) -> dict[str, float]:
    """The multi-object terms plus ``total`` (max 7). See the module docstring."""
    if not isinstance(text, str):
        text = ""
    out = {
        "think_format": think_format_reward(text),
        "item_format": item_format_reward(text),
        "accuracy": multi_object_accuracy(text, gt, units_per_pixel=units_per_pixel),
        "non_repeat": non_repeat_reward(text, allowed_repeats),
    }
    out["total"] = float(sum(out.values()))
    return out


__all__ = [
    "MULTI_OBJECT_TERMS",
    "SEGZERO_TERMS",
    "GroundTruth",
    "answer_format_soft",
    "answer_format_strict",
    "box_iou",
    "box_l1",
    "check_units_per_pixel",
    "item_format_reward",
    "matched_point_distance",
    "multi_object_accuracy",
    "multi_object_rewards",
    "non_repeat_reward",
    "point_in_box",
    "predicted_objects",
    "segzero_rewards",
    "think_format_reward",
]
