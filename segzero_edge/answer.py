"""Parse the reasoner's ``<think>…</think><answer>…</answer>`` text; map coordinates back.

The parser never raises: every input maps to a :class:`ParsedAnswer` with a status.
Accepted answer forms (coordinates in the reasoner's 840 x 840 frame):

- ``[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}, ...]`` (Seg-Zero v2, multi-object)
- a single such dict
- the first release's ``{"bbox": [...], "points_1": [x, y], "points_2": [x, y]}``
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .layout import REASONER_SIZE
from .types import Box, ObjectPrompt, Point, Status

_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_BOX_RE = re.compile(r'"bbox(?:_2d)?"\s*:\s*\[\s*(' + _NUM + r"(?:\s*,\s*" + _NUM + r"){3})\s*\]")
_POINT_RE = re.compile(r'"point(?:_2d|s_[12])"\s*:\s*\[\s*(' + _NUM + r"\s*,\s*" + _NUM + r")\s*\]")


@dataclass(frozen=True)
class ParsedAnswer:
    """Result of parsing one generation; ``objects`` are in the 840 x 840 frame."""

    status: Status
    objects: tuple[ObjectPrompt, ...]
    reasoning: str
    answer_text: str | None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _coords(v: Any, n: int) -> tuple[float, ...] | None:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        return None
    out = tuple(_number(x) for x in v)
    return None if any(x is None for x in out) else out  # type: ignore[return-value]


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def _make_box(c: tuple[float, ...]) -> Box:
    x1, y1, x2, y2 = (_round(v) for v in c)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _object_from_dict(d: Any) -> ObjectPrompt | None:
    if not isinstance(d, dict):
        return None
    box_c = _coords(d.get("bbox_2d", d.get("bbox")), 4)
    if box_c is None:
        return None
    points: list[Point] = []
    for key in ("point_2d", "points_1", "points_2"):
        p = _coords(d.get(key), 2)
        if p is not None:
            points.append((_round(p[0]), _round(p[1])))
    return ObjectPrompt(box=_make_box(box_c), points=tuple(points))


def _objects_from_json(value: Any) -> list[ObjectPrompt] | None:
    """Objects of a decoded JSON value; ``None`` when nothing in it has the schema."""
    items = value if isinstance(value, list) else [value]
    objs = [o for o in (_object_from_dict(d) for d in items) if o is not None]
    if not objs and items:
        return None
    return objs


def _objects_from_regex(text: str) -> list[ObjectPrompt] | None:
    """Salvage boxes and points from almost-JSON (single quotes, trailing commas...)."""
    boxes = [m for m in _BOX_RE.finditer(text)]
    if not boxes:
        return None
    objs = []
    for i, m in enumerate(boxes):
        end = boxes[i + 1].start() if i + 1 < len(boxes) else len(text)
        box = _make_box(tuple(float(x) for x in m.group(1).split(",")))
        pts = []
        for pm in _POINT_RE.finditer(text, m.end(), end):
            x, y = (float(v) for v in pm.group(1).split(","))
            if math.isfinite(x) and math.isfinite(y):
                pts.append((_round(x), _round(y)))
        if all(math.isfinite(v) for v in box):
            objs.append(ObjectPrompt(box=box, points=tuple(pts)))
    return objs or None


def parse_answer(text: str, truncated: bool = False) -> ParsedAnswer:
    """Parse a generation. ``truncated`` says the generation hit its token budget."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    think = _THINK_RE.search(text)
    reasoning = think.group(1).strip() if think else ""
    answers = _ANSWER_RE.findall(text)
    if not answers:
        status = Status.TRUNCATED if truncated else Status.UNPARSEABLE
        return ParsedAnswer(status, (), reasoning, None)
    body = answers[-1].strip()
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        objs = _objects_from_regex(body)
    else:
        objs = _objects_from_json(value)
    if objs is None:
        return ParsedAnswer(Status.UNPARSEABLE, (), reasoning, body)
    if not objs:
        return ParsedAnswer(Status.NO_OBJECT, (), reasoning, body)
    return ParsedAnswer(Status.OK, tuple(objs), reasoning, body)


def _scale(v: int, factor: float, limit: int) -> int:
    return min(max(int(v * factor + 0.5), 0), limit - 1)


def to_image_frame(
    objects: tuple[ObjectPrompt, ...] | list[ObjectPrompt],
    image_hw: tuple[int, int],
    frame: int = REASONER_SIZE,
) -> list[ObjectPrompt]:
    """Map objects from the ``frame`` x ``frame`` square to an H x W image, clamped inside it."""
    h, w = image_hw
    fx, fy = w / frame, h / frame
    out = []
    for o in objects:
        x1, y1, x2, y2 = o.box
        box = (_scale(x1, fx, w), _scale(y1, fy, h), _scale(x2, fx, w), _scale(y2, fy, h))
        pts = tuple((_scale(x, fx, w), _scale(y, fy, h)) for x, y in o.points)
        out.append(ObjectPrompt(box=box, points=pts))
    return out


def format_answer(objects: list[ObjectPrompt], reasoning: str = "") -> str:
    """The generation text a well-behaved model writes for ``objects`` (840 frame)."""
    items = [{"bbox_2d": list(o.box), "point_2d": list(o.points[0])} for o in objects if o.points]
    return f"<think>{reasoning}</think><answer>{json.dumps(items)}</answer>"
