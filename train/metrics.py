"""Reasoning-segmentation metrics (numpy only): gIoU, cIoU, split by ``is_sentence``.

- Per sample: ``I = |pred & gt|``, ``U = |pred | gt|`` over the valid pixels (ground-truth
  value 255 = "ignore" is excluded from both). A parse failure (no usable answer) counts
  ``I = 0``, ``U = |gt|`` whatever mask was produced.
- gIoU = mean over samples of ``I / U``; cIoU = ``sum I / sum U``.
- Empty union (empty target predicted empty): two conventions, both reported:
  ``giou_lisa`` counts such a sample as 1.0 (LISA's evaluation code); ``giou_exclude`` leaves
  it out of the mean. cIoU is the same under both (the sample adds 0 to both sums).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

IGNORE_VALUE = 255


@dataclass(frozen=True)
class SampleScore:
    """Intersection and union of one sample, with its split and parse outcome."""

    intersection: int
    union: int
    is_sentence: bool = False
    parse_failed: bool = False

    @property
    def empty_union(self) -> bool:
        return self.union == 0

    def iou(self, empty: float | None = 1.0) -> float | None:
        """``I / U``; ``empty`` for an empty union (``None``: excluded)."""
        return empty if self.union == 0 else self.intersection / self.union

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["iou"] = self.iou(1.0)
        return d


def intersection_union(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """``(I, U)`` of a predicted bool mask against a 0/1/255 ground truth (255 ignored).

    ``pred=None`` is a parse failure: ``(0, |gt|)``.
    """
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground-truth mask must be 2-D, got shape {gt.shape}")
    valid = gt != IGNORE_VALUE
    target = (gt == 1) & valid
    if pred is None:
        return 0, int(target.sum())
    pred = np.asarray(pred)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted mask shape {pred.shape} != ground-truth shape {gt.shape}")
    p = pred.astype(bool) & valid
    return int((p & target).sum()), int((p | target).sum())


def score_sample(
    pred: np.ndarray | None,
    gt: np.ndarray,
    *,
    is_sentence: bool = False,
    parse_failed: bool = False,
) -> SampleScore:
    """A :class:`SampleScore`; ``parse_failed`` forces ``I = 0, U = |gt|``."""
    i, u = intersection_union(None if parse_failed else pred, gt)
    return SampleScore(i, u, bool(is_sentence), bool(parse_failed))


def summarise(scores: Iterable[SampleScore]) -> dict[str, Any]:
    """gIoU (both empty-union conventions), cIoU, counts; ``nan`` where there is no sample."""
    scores = list(scores)
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    lisa = [float(s.iou(1.0) or 0.0) for s in scores]
    excl = [v for v in (s.iou(None) for s in scores) if v is not None]
    return {
        "n": len(scores),
        "giou_lisa": float(np.mean(lisa)) if lisa else float("nan"),
        "giou_exclude": float(np.mean(excl)) if excl else float("nan"),
        "ciou": inter / union if union else float("nan"),
        "intersection": int(inter),
        "union": int(union),
        "empty_union": sum(s.empty_union for s in scores),
        "parse_failures": sum(s.parse_failed for s in scores),
    }


def summarise_splits(scores: Iterable[SampleScore]) -> dict[str, dict[str, Any]]:
    """``{"all": ..., "sentence": ..., "phrase": ...}`` (split by ``is_sentence``)."""
    scores = list(scores)
    return {
        "all": summarise(scores),
        "sentence": summarise(s for s in scores if s.is_sentence),
        "phrase": summarise(s for s in scores if not s.is_sentence),
    }


def format_summary(splits: Mapping[str, Mapping[str, Any]]) -> str:
    """A small text table of :func:`summarise_splits` (percentages)."""
    lines = [f"{'split':<9}{'n':>6}{'gIoU(lisa)':>12}{'gIoU(excl)':>12}{'cIoU':>8}{'fail':>6}"]
    for name, s in splits.items():
        lines.append(
            f"{name:<9}{s['n']:>6}{100 * s['giou_lisa']:>12.2f}{100 * s['giou_exclude']:>12.2f}"
            f"{100 * s['ciou']:>8.2f}{s['parse_failures']:>6}"
        )
    return "\n".join(lines)


__all__ = [
    "SampleScore",
    "format_summary",
    "intersection_union",
    "score_sample",
    "summarise",
    "summarise_splits",
]
