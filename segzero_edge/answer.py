"""The one answer parser: ``<think>…</think><answer>…</answer>`` -> objects; coordinate mapping.

Used by the runtime (lenient mode), the evaluation reference and the training rewards (strict
mode). The rule, for every caller: the answer is the body of the **first**
``<answer>…</answer>`` block (as Seg-Zero's reward and evaluation code take it with
``re.search``), stripped of surrounding white space.

- **strict** (Seg-Zero's own rule): the body must decode with ``json.loads``; anything else is
  ``UNPARSEABLE``.
- **lenient** (the runtime's default): when ``json.loads`` fails, boxes and points are salvaged
  from almost-JSON (trailing commas, a cut-off tail) with a regular expression that needs
  double-quoted keys.
- **strict with a schema** (``strict=True, schema="object"`` or ``"list"``): the scoring rule of
  that answer schema's reference evaluation script, exactly (see :func:`parse_answer`); this is
  what ``segzero-edge eval --protocol segzero`` counts as a parse failure.

Objects (:class:`AnswerObject`) are read from a decoded value that is a list of dicts or a
single dict, in resize coordinates (pixels of the 840 x 840 resize the reasoner saw, Seg-Zero's
``resize_size``), kept as written: int or float, never rounded or reordered:

- ``{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}`` (multi-object family; ``point_2d`` may
  also be a list of points)
- ``{"bbox": [x1, y1, x2, y2], "points_1": [x, y], "points_2": [x, y]}`` (Seg-Zero v1)

Points keep the order of their keys in the dict, as Seg-Zero v1's parser takes them
(``inference_scripts/infer.py``: the first two keys containing ``points``). Items without a
box of four finite numbers are dropped; a value with items but no valid one is
``UNPARSEABLE``; ``[]`` is ``NO_OBJECT``. The parser never raises.

The mapping back to image pixels (:func:`to_image_pixels`: answer objects in, the
:class:`~segzero_edge.types.ObjectPrompt` objects SAM2 is prompted with out) uses the reference
scripts' own formulas (see :func:`map_half_up` and :func:`map_round_int`): no rounding of the resize
coordinates, no reordering of box corners, no clamping to the image (the far edge 840 maps to W
or H, as in the reference).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .layout import REASONER_SIZE
from .types import ObjectPrompt, Status

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_BOX_RE = re.compile(r'"bbox(?:_2d)?"\s*:\s*\[\s*(' + _NUM + r"(?:\s*,\s*" + _NUM + r"){3})\s*\]")
_POINT_RE = re.compile(r'"point(?:_2d|s_[12])"\s*:\s*\[\s*(' + _NUM + r"\s*,\s*" + _NUM + r")\s*\]")
_BOX_KEYS = ("bbox_2d", "bbox")
_POINT_KEYS = ("point_2d", "points_1", "points_2")
_MAX_PIXEL = 2**31 - 1  # mapped values beyond this are clipped (the reference would overflow)
_V1_JSON_RE = re.compile(r"{[^}]+}")  # Seg-Zero evaluation.py: the first flat {...} anywhere
_V1_THINK_RE = re.compile(r"<think>([^<]+)</think>")  # evaluation.py needs it to match
SCHEMAS = ("object", "list")
"""Answer schemas: ``"object"`` (Seg-Zero v1, one dict) and ``"list"`` (multi-object)."""

Mapping = Callable[[float, float], int]
"""``mapping(value, factor) -> pixel``: one resize coordinate to an image pixel (``factor``:
``W / 840`` or ``H / 840``, the reference's ``x_factor`` / ``y_factor``)."""

AnswerBox = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` as the reasoner wrote it (resize coordinates; int or float)."""
AnswerPoint = tuple[float, float]
"""``(x, y)`` as the reasoner wrote it (resize coordinates; int or float)."""


@dataclass(frozen=True)
class AnswerObject:
    """One object of the reasoner's answer, in resize coordinates, as written.

    Resize coordinates: pixels of the square the image was resized to for the reasoner
    (``ModelFamily.resize_size``: 840 x 840 for Seg-Zero, its ``resize_size``), x to the right,
    y down; a Qwen3-VL family's answers are on its 0-1000 grid instead
    (``ModelFamily.coord_span``). The numbers are kept as the answer wrote them: int or float
    (an int stays an int), box corners in the written order (``x1 > x2`` is possible), nothing
    rounded or clamped. ``box``: ``(x1, y1, x2, y2)`` (``bbox_2d`` / ``bbox``); ``points``:
    ``((x, y), ...)`` in the answer's key order (``point_2d`` / ``points_1``, ``points_2``),
    possibly none. :func:`to_image_pixels` maps it to an image's
    :class:`~segzero_edge.types.ObjectPrompt`.
    """

    box: AnswerBox
    points: tuple[AnswerPoint, ...]


@dataclass(frozen=True)
class ParsedAnswer:
    """Result of parsing one generation; ``objects`` are in resize coordinates, as written."""

    status: Status
    objects: tuple[AnswerObject, ...]
    reasoning: str
    answer_text: str | None


def answer_body(text: str) -> str | None:
    """The text between the first ``<answer>`` and the next ``</answer>``, stripped; or None."""
    m = ANSWER_RE.search(text) if isinstance(text, str) else None
    return m.group(1).strip() if m else None


def answer_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when the first answer body decodes with ``json.loads``, else
    ``(False, None)`` (Seg-Zero's strict rule)."""
    body = answer_body(text)
    if body is None:
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


def is_number(v: Any) -> bool:
    """A finite int or float within float range (``bool`` is not a number here)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond the float range
        return False


def numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """``value`` as ``n`` finite numbers (ints stay ints), or ``None``."""
    if isinstance(value, (list, tuple)) and len(value) == n and all(is_number(v) for v in value):
        return tuple(value)
    return None


def object_from_item(item: Any) -> AnswerObject | None:
    """One object of either schema; ``None`` without a box of four finite numbers."""
    if not isinstance(item, dict):
        return None
    box = None
    for key in _BOX_KEYS:
        if key in item:
            box = numbers(item[key], 4)
            break
    if box is None:
        return None
    points: list[tuple[float, ...]] = []
    for key, raw in item.items():  # dict order, as the v1 reference reads its point keys
        if key not in _POINT_KEYS:
            continue
        single = numbers(raw, 2)
        if single is not None:
            points.append(single)
        elif key == "point_2d" and isinstance(raw, list):  # also [[x, y], ...]
            points.extend(p for p in (numbers(r, 2) for r in raw) if p is not None)
    return AnswerObject(box=box, points=tuple(points))  # type: ignore[arg-type]


def objects_from_json(value: Any) -> list[AnswerObject] | None:
    """Objects of a decoded JSON value; ``None`` when it has items but none with a box."""
    items = value if isinstance(value, list) else [value]
    objs = [o for o in (object_from_item(d) for d in items) if o is not None]
    if items and not objs:
        return None
    return objs


def _objects_from_regex(text: str) -> list[AnswerObject] | None:
    """Salvage boxes and points from almost-JSON (trailing commas, a cut-off tail...)."""
    boxes = list(_BOX_RE.finditer(text))
    objs = []
    for i, m in enumerate(boxes):
        end = boxes[i + 1].start() if i + 1 < len(boxes) else len(text)
        box = tuple(_literal(x) for x in m.group(1).split(","))
        pts = []
        for pm in _POINT_RE.finditer(text, m.end(), end):
            p = tuple(_literal(v) for v in pm.group(1).split(","))
            if all(is_number(v) for v in p):
                pts.append(p)
        if all(is_number(v) for v in box):
            objs.append(AnswerObject(box=box, points=tuple(pts)))  # type: ignore[arg-type]
    return objs or None


def _literal(s: str) -> float:
    """A JSON number literal as ``json.loads`` reads it (int when it is one)."""
    v = json.loads(s.strip())
    return v if isinstance(v, int) else float(v)


def parse_answer(
    text: str, truncated: bool = False, *, strict: bool = False, schema: str | None = None
) -> ParsedAnswer:
    """Parse a generation (see the module docstring). ``truncated``: it hit its token budget.

    ``strict=True`` is Seg-Zero's rule (``json.loads`` of the first answer body or nothing);
    the default salvages almost-JSON. ``strict=True`` with ``schema`` is the scoring rule of
    that schema's reference evaluation script (dvlab-research/Seg-Zero at 42a3345), every
    deviation from which the script scores as a failure (``UNPARSEABLE``):

    - ``"object"`` (``evaluation_scripts/evaluation.py`` ``extract_bbox_points_think``): the
      output must hold ``<think>`` + text without ``<`` + ``</think>``; the first ``{[^}]+}``
      *anywhere* in the output (no ``<answer>`` tag needed) through ``json.loads``; the first
      key containing ``bbox`` (any case) with 4 values, the first two keys containing
      ``points`` with 2 or more values each; every value read with Python's ``int()`` (floats
      truncate, digit strings count). One object, two points.
    - ``"list"`` (``evaluation_scripts/evaluation_visionreasoner.py``): ``json.loads`` of the
      first answer body; every item a dict whose ``bbox_2d`` and ``point_2d`` are lists of at
      least 4 and 2 numbers (the first 4 and 2 are taken); an empty value (``[]``, ``{}``,
      ``""``) is ``NO_OBJECT``. One point per object.

    Raises ``ValueError`` only for a ``schema`` not in :data:`SCHEMAS` or given without
    ``strict``; otherwise never raises.
    """
    if schema is not None and (schema not in SCHEMAS or not strict):
        raise ValueError(f"schema must be one of {SCHEMAS} with strict=True, got {schema!r}")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    think = _THINK_RE.search(text)
    reasoning = think.group(1).strip() if think else ""
    if schema == "object":
        return _parse_v1_reference(text, truncated, reasoning)
    body = answer_body(text)
    if body is None:
        status = Status.TRUNCATED if truncated else Status.UNPARSEABLE
        return ParsedAnswer(status, (), reasoning, None)
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        objs = None if strict else _objects_from_regex(body)
    else:
        objs = _list_reference_objects(value) if schema == "list" else objects_from_json(value)
    if objs is None:
        return ParsedAnswer(Status.UNPARSEABLE, (), reasoning, body)
    if not objs:
        return ParsedAnswer(Status.NO_OBJECT, (), reasoning, body)
    return ParsedAnswer(Status.OK, tuple(objs), reasoning, body)


def _reference_number(v: Any) -> float | None:
    """``v`` as ``v * factor`` reads it in the multi-object script (``bool`` is 0 or 1)."""
    v = int(v) if isinstance(v, bool) else v
    return v if is_number(v) else None


def _list_reference_objects(value: Any) -> list[AnswerObject] | None:
    """The objects ``evaluation_visionreasoner.py`` reads from a decoded answer, or ``None``
    where its list comprehensions raise."""
    if isinstance(value, (dict, str)) and not value:
        return []  # iterating an empty dict or string: no object, no error
    if not isinstance(value, list):
        return None
    objs = []
    for item in value:
        if not isinstance(item, dict):
            return None
        box, point = item.get("bbox_2d"), item.get("point_2d")
        if not (isinstance(box, list) and len(box) >= 4):
            return None
        if not (isinstance(point, list) and len(point) >= 2):
            return None
        b = [_reference_number(v) for v in box[:4]]
        p = [_reference_number(v) for v in point[:2]]
        if any(v is None for v in b + p):
            return None
        objs.append(AnswerObject(box=tuple(b), points=(tuple(p),)))  # type: ignore[arg-type]
    return objs


def _v1_int(v: Any) -> int | None:
    """Python's ``int(v)`` as ``evaluation.py`` applies it, ``None`` where it (or the later
    multiplication by a float factor) raises."""
    try:
        out = int(v)
        float(out)  # int * float factor overflows beyond the float range
    except (TypeError, ValueError, OverflowError):
        return None
    return out


def _v1_values(value: Any, n: int, exact: bool) -> tuple[int, ...] | None:
    """``int()`` of ``value[0:n]`` (indexable: a list or a string), ``None`` on any error."""
    if not isinstance(value, (list, str)) or len(value) < n or (exact and len(value) != n):
        return None
    out = tuple(_v1_int(v) for v in value[:n])
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def _parse_v1_reference(text: str, truncated: bool, reasoning: str) -> ParsedAnswer:
    """``evaluation.py``'s ``extract_bbox_points_think`` (see :func:`parse_answer`)."""
    match = _V1_JSON_RE.search(text)
    if match is None:
        status = Status.TRUNCATED if truncated else Status.UNPARSEABLE
        return ParsedAnswer(status, (), reasoning, None)
    body = match.group(0)
    failed = ParsedAnswer(Status.UNPARSEABLE, (), reasoning, body)
    if _V1_THINK_RE.search(text) is None:
        return failed
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return failed
    if not isinstance(data, dict):
        return failed
    box_key = next((k for k in data if "bbox" in k.lower()), None)
    point_keys = [k for k in data if "points" in k.lower()][:2]
    if box_key is None or len(point_keys) != 2:
        return failed
    box = _v1_values(data[box_key], 4, exact=True)
    points = [_v1_values(data[k], 2, exact=False) for k in point_keys]
    if box is None or any(p is None for p in points):
        return failed
    obj = AnswerObject(box=box, points=tuple(points))  # type: ignore[arg-type]
    return ParsedAnswer(Status.OK, (obj,), reasoning, body)


# --------------------------------------------------------------------------- mapping


def _pixel(v: float) -> int:
    return int(min(max(v, -_MAX_PIXEL), _MAX_PIXEL))


def map_half_up(value: float, factor: float) -> int:
    """``int(value * factor + 0.5)``: the multi-object scripts' mapping (Seg-Zero
    ``inference_scripts/infer_multi_object.py``,
    ``evaluation_scripts/evaluation_visionreasoner.py``)."""
    return _pixel(value * factor + 0.5)


def map_round_int(value: float, factor: float) -> int:
    """``round(int(value) * factor)``: Seg-Zero v1's mapping (``inference_scripts/infer.py``,
    ``evaluation_scripts/evaluation.py``): truncate to int first, then Python's round (half to
    even: 2.5 -> 2, 3.5 -> 4)."""
    return round(min(max(int(value) * factor, -_MAX_PIXEL), _MAX_PIXEL))


def to_image_pixels(
    objects: Sequence[AnswerObject],
    image_hw: tuple[int, int],
    mapping: Mapping = map_half_up,
    coord_span: int = REASONER_SIZE,
) -> list[ObjectPrompt]:
    """Map answer objects to an H x W image's pixels with ``mapping``.

    Args:
        objects: The answer's objects, in resize coordinates as written.
        image_hw: ``(H, W)`` of the image the objects are wanted on (pixels).
        mapping: One coordinate's formula (:func:`map_half_up` or :func:`map_round_int`).
        coord_span: The span of the answer's coordinates per axis: Seg-Zero's ``resize_size``
            (840) by default, 1000 for Qwen3-VL's grid (``ModelFamily.coord_span``).

    Returns:
        One :class:`~segzero_edge.types.ObjectPrompt` per object, in order: int pixels of the
        image. The factors are ``W / coord_span`` and ``H / coord_span`` (computed first, as
        the reference scripts do: ``x_factor = original_width / resize_size``). Nothing is
        clamped or reordered: values may fall outside ``0..W-1`` / ``0..H-1`` exactly as the
        reference would pass them to SAM2 (beyond ``±(2**31 - 1)`` they are clipped).
    """
    h, w = image_hw
    fx, fy = w / coord_span, h / coord_span
    out = []
    for o in objects:
        x1, y1, x2, y2 = o.box
        box = (mapping(x1, fx), mapping(y1, fy), mapping(x2, fx), mapping(y2, fy))
        pts = tuple((mapping(x, fx), mapping(y, fy)) for x, y in o.points)
        out.append(ObjectPrompt(box=box, points=pts))
    return out


# --------------------------------------------------------------------------- writing


def format_list_answer(objects: Sequence[AnswerObject], reasoning: str = "") -> str:
    """The multi-object generation for ``objects`` (resize coordinates): one ``point_2d`` per
    object; an object without points is left out."""
    items = [{"bbox_2d": list(o.box), "point_2d": list(o.points[0])} for o in objects if o.points]
    return f"<think>{reasoning}</think><answer>{json.dumps(items)}</answer>"


def format_v1_answer(obj: AnswerObject, reasoning: str = "") -> str:
    """The Seg-Zero v1 generation for one object with two points (resize coordinates).
    Raises ``ValueError`` for fewer than two points."""
    if len(obj.points) < 2:
        raise ValueError(f"a Seg-Zero v1 answer needs two points, got {len(obj.points)}")
    item = {
        "bbox": list(obj.box),
        "points_1": list(obj.points[0]),
        "points_2": list(obj.points[1]),
    }
    return f"<think>{reasoning}</think><answer>{json.dumps(item)}</answer>"
