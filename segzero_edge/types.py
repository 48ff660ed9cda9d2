"""Result types returned by :meth:`SegZeroEdge.segment`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]
Point = tuple[int, int]


class Status(str, Enum):
    """Outcome of one ``segment()`` call on the model side."""

    OK = "ok"
    NO_OBJECT = "no_object"
    UNPARSEABLE = "unparseable"
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class ObjectPrompt:
    """One object the reasoner named: a box ``(x1, y1, x2, y2)`` and its points.

    In a :class:`Segmentation`: integer original-image pixels, mapped back as the model
    family's reference script does (not clamped: the far edge of the 840 frame maps to W or H;
    corners as the model wrote them). In ``ParsedAnswer.objects``: the 840-frame numbers as
    written (int or float).
    """

    box: Box
    points: tuple[Point, ...]

    @property
    def point(self) -> Point | None:
        """The first point, or ``None`` when the model gave none."""
        return self.points[0] if self.points else None

    def to_json(self) -> dict[str, Any]:
        return {"bbox_2d": list(self.box), "point_2d": [list(p) for p in self.points]}


@dataclass
class Segmentation:
    """What ``segment()`` returns.

    ``mask`` is an H x W bool array over the original image (the OR of every object's
    mask); ``objects`` are in original-image pixels (see :class:`ObjectPrompt`); ``timings``
    holds seconds per stage.
    """

    mask: np.ndarray
    objects: list[ObjectPrompt]
    reasoning: str
    answer_raw: str
    status: Status
    timings: dict[str, float] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the mask itself is left out; see ``mask_area``)."""
        return {
            "status": self.status.value,
            "objects": [o.to_json() for o in self.objects],
            "scores": [float(s) for s in self.scores],
            "mask_shape": list(self.mask.shape),
            "mask_area": int(self.mask.sum()),
            "reasoning": self.reasoning,
            "answer_raw": self.answer_raw,
            "timings": {k: float(v) for k, v in self.timings.items()},
        }
