"""Reasoning-segmentation metrics (numpy only): gIoU and cIoU under two protocols.

The ground truth is an H x W uint8 mask (1 target, 0 background, 255 ignore;
:func:`segzero_train.datasets.rasterise`). ``pred=None`` is a parse failure.

``lisa`` (LISA's ``train_ds.py`` ``validate`` with ``utils/utils.py``
``intersectionAndUnionGPU(..., ignore_index=255)``):

- ``I``, ``U`` over the non-ignore pixels; a parse failure is an empty prediction
  (``I = 0``, ``U = |target|``);
- gIoU = mean of ``I / (U + 1e-5)``, a sample with ``U = 0`` (no target, nothing predicted)
  counts 1.0; cIoU = ``sum I / (sum U + 1e-10)``.

``segzero`` (Seg-Zero's ``evaluation_scripts/evaluation_visionreasoner.py`` and
``calculate_iou.py``):

- the ignore pixels count as target (the released masks are ``mask.astype(bool)``);
- a parse failure counts ``I = 0``, ``U = |target|``, kept even when that is 0 (IoU 0);
- a parsed answer whose union is empty (no target, nothing predicted) is left out
  (``compute_iou`` returns 0 and the unpacking error skips the sample);
- gIoU = mean of ``I / U`` over the kept samples; cIoU = ``sum I / sum U``.

Both are reported for the whole set and split by ``is_sentence`` (LISA's long/short queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

IGNORE_VALUE = 255
PROTOCOLS = ("segzero", "lisa")
LISA_EPS = 1e-5
"""LISA's ``intersection / (union + 1e-5)`` per sample."""
LISA_CIOU_EPS = 1e-10


@dataclass(frozen=True)
class SampleScore:
    """Intersection and union of one sample under one protocol."""

    intersection: int
    union: int
    is_sentence: bool = False
    parse_failed: bool = False
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check(pred: np.ndarray | None, gt: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground-truth mask must be 2-D, got shape {gt.shape}")
    if pred is not None and np.asarray(pred).shape != gt.shape:
        raise ValueError(
            f"predicted mask shape {np.asarray(pred).shape} != ground-truth shape {gt.shape}"
        )
    return gt


def intersection_union(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """LISA's ``(I, U)``: a bool prediction against a 0/1/255 ground truth, 255 ignored.

    ``pred=None`` (parse failure) is an empty prediction: ``(0, |target|)``.
    """
    gt = _check(pred, gt)
    valid = gt != IGNORE_VALUE
    target = gt == 1
    if pred is None:
        return 0, int(target.sum())
    p = np.asarray(pred).astype(bool) & valid
    return int((p & target).sum()), int((p | target).sum())


def score_lisa(
    pred: np.ndarray | None, gt: np.ndarray, *, is_sentence: bool = False
) -> SampleScore:
    """One sample under the ``lisa`` protocol (see the module docstring)."""
    i, u = intersection_union(pred, gt)
    return SampleScore(i, u, bool(is_sentence), parse_failed=pred is None)


def score_segzero(
    pred: np.ndarray | None, gt: np.ndarray, *, is_sentence: bool = False
) -> SampleScore:
    """One sample under the ``segzero`` protocol: ignore pixels are target; a parsed answer with
    an empty union is skipped; a parse failure (``pred=None``) is ``(0, |target|)``."""
    gt = _check(pred, gt)
    target = gt != 0
    if pred is None:
        return SampleScore(0, int(target.sum()), bool(is_sentence), parse_failed=True)
    p = np.asarray(pred).astype(bool)
    i, u = int((p & target).sum()), int((p | target).sum())
    return SampleScore(i, u, bool(is_sentence), skipped=u == 0)


SCORERS = {"lisa": score_lisa, "segzero": score_segzero}


def summarise(scores: Iterable[SampleScore], protocol: str) -> dict[str, Any]:
    """gIoU, cIoU and counts of one protocol; ``nan`` where no sample counts."""
    if protocol not in SCORERS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    scores = list(scores)
    kept = [s for s in scores if not s.skipped]
    inter = sum(s.intersection for s in kept)
    union = sum(s.union for s in kept)
    if protocol == "lisa":
        ious = [s.intersection / (s.union + LISA_EPS) + (s.union == 0) for s in kept]
        ciou = inter / (union + LISA_CIOU_EPS) if kept else float("nan")
    else:
        ious = [s.intersection / s.union if s.union > 0 else 0.0 for s in kept]
        ciou = (inter / union if union > 0 else 0.0) if kept else float("nan")
    return {
        "n": len(scores),
        "counted": len(kept),
        "giou": float(np.mean(ious)) if ious else float("nan"),
        "ciou": float(ciou),
        "intersection": int(inter),
        "union": int(union),
        "skipped": len(scores) - len(kept),
        "empty_union": sum(s.union == 0 for s in scores),
        "parse_failures": sum(s.parse_failed for s in scores),
    }


def summarise_splits(scores: Iterable[SampleScore], protocol: str) -> dict[str, dict[str, Any]]:
    """``{"all": ..., "sentence": ..., "phrase": ...}`` (split by ``is_sentence``)."""
    scores = list(scores)
    return {
        "all": summarise(scores, protocol),
        "sentence": summarise((s for s in scores if s.is_sentence), protocol),
        "phrase": summarise((s for s in scores if not s.is_sentence), protocol),
    }


def format_summary(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A text table of ``{protocol: summarise_splits(...)}`` (percentages)."""
    lines = [f"{'protocol':<9}{'split':<9}{'n':>6}{'counted':>8}{'gIoU':>8}{'cIoU':>8}{'fail':>6}"]
    for protocol, splits in summary.items():
        for name, s in splits.items():
            lines.append(
                f"{protocol:<9}{name:<9}{s['n']:>6}{s['counted']:>8}{100 * s['giou']:>8.2f}"
                f"{100 * s['ciou']:>8.2f}{s['parse_failures']:>6}"
            )
    return "\n".join(lines)


__all__ = [
    "PROTOCOLS",
    "SCORERS",
    "SampleScore",
    "format_summary",
    "intersection_union",
    "score_lisa",
    "score_segzero",
    "summarise",
    "summarise_splits",
]
