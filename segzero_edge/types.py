"""Result types returned by :meth:`SegZeroEdge.segment` (see ``docs/results.md``).

Coordinates: image pixels of the frame given to ``segment()``, x to the right, y down, the
origin at the top-left corner of the top-left pixel. A box is ``(x1, y1, x2, y2)`` (XYXY)
with ``0 <= x1 <= x2 <= W`` and ``0 <= y1 <= y2 <= H``: ``x1, y1`` the inclusive left/top
edges, ``x2, y2`` the exclusive right/bottom edges, so ``(0, 0, W, H)`` is the whole image and
the box covers pixel columns ``x1 .. x2 - 1``. This is the convention of Meta's sam2
``SAM2ImagePredictor.predict(box=...)`` (XYXY pixels, divided by W and H in
``SAM2Transforms.transform_boxes``, so x = W is the image's right edge).
"""

from __future__ import annotations

import os
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


def normalize_box(box: tuple[float, float, float, float], hw: tuple[int, int]) -> Box:
    """``box`` with its corners ordered (``x1 <= x2``, ``y1 <= y2``) and clamped to an
    ``hw = (H, W)`` image in the module's convention (``0 <= x <= W``, ``0 <= y <= H``),
    as ints. A box wholly outside the image becomes an empty box on its edge."""
    h, w = int(hw[0]), int(hw[1])
    x1, y1, x2, y2 = (int(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0), w), min(max(x2, 0), w)))
    y1, y2 = sorted((min(max(y1, 0), h), min(max(y2, 0), h)))
    return (x1, y1, x2, y2)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object in image pixels: a box ``(x1, y1, x2, y2)`` and its points ``(x, y)``.

    Always int pixels of the image given to ``segment()`` (the module's convention); the
    reasoner's own numbers are :class:`~segzero_edge.answer.AnswerObject` (resize coordinates,
    as written), which :func:`~segzero_edge.answer.to_image_pixels` maps to this type.

    - From :func:`~segzero_edge.answer.to_image_pixels`: as mapped, corners not yet ordered or
      clamped (what the reference script passes to SAM2).
    - In a :class:`Segmentation`: the box and points SAM2 was prompted with, mapped from the
      answer as the family's reference script maps them, the box then ordered and clamped to
      the image (points are not clamped, as the reference passes them).
    - In a tracked frame (:class:`~segzero_edge.tracker.TrackedSegmentation`): no prompt but
      the tight box of the object's mask and no points; ``box`` is ``None`` when the object is
      lost (empty mask).
    """

    box: Box | None
    points: tuple[Point, ...]

    @property
    def point(self) -> Point | None:
        """The first point, or ``None`` when the model gave none."""
        return self.points[0] if self.points else None

    def to_json(self) -> dict[str, Any]:
        """``{"box": [x1, y1, x2, y2] or null, "points": [[x, y], ...]}``."""
        return {
            "box": None if self.box is None else [int(v) for v in self.box],
            "points": [[int(v) for v in p] for p in self.points],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObjectPrompt:
        box = data.get("box")
        return cls(
            box=None if box is None else tuple(int(v) for v in box),  # type: ignore[arg-type]
            points=tuple(tuple(int(v) for v in p) for p in data.get("points", [])),  # type: ignore[misc]
        )


@dataclass
class Segmentation:
    """What ``segment()`` returns. Coordinates and boxes: see the module docstring.

    - ``mask``: H x W bool, the union (OR) of ``object_masks``.
    - ``object_masks``: N x H x W bool, one mask per object, in the order of ``objects``
      (N = 0 when the model named no object).
    - ``objects``: the N objects the reasoner named (box and points, image pixels).
    - ``iou_predictions``: N floats, SAM2's predicted IoU of each chosen mask (the decoder's
      ``iou_predictions``, as ``SAM2ImagePredictor.predict`` returns them).
    - ``query``: the query; ``reasoning``: the ``<think>`` text; ``answer_raw``: the whole
      generation; ``status``: see :class:`Status`.
    - ``timings``: seconds per stage (``preprocess``, ``reason``, ``vision_encode``,
      ``prefill``, ``decode``, ``sam_preprocess``, ``sam_encode``, ``sam_wait``,
      ``sam_decode``, ``postprocess``, ``total``), nothing else.
    - ``overlap``: the SAM2 encode ran beside the reasoner; ``cuda_pixels``: pre/post-
      processing ran as CUDA kernels; ``sam_cache_hit``: the frame's SAM2 encoding was
      reused; ``reasoner_cache_hit``: llama.cpp restored the frame's image prefix;
      ``generated_tokens``: tokens the reasoner generated.
    - ``image``: the frame as given (H x W x 3 uint8 RGB or a host NV12 frame; not copied),
      for :meth:`plot`; ``None`` for a device-memory frame or a result read from JSON.
    """

    mask: np.ndarray
    objects: list[ObjectPrompt]
    reasoning: str
    answer_raw: str
    status: Status
    timings: dict[str, float] = field(default_factory=dict)
    iou_predictions: list[float] = field(default_factory=list)
    # None means "not given": __post_init__ replaces it with an array before anyone reads it
    object_masks: np.ndarray = field(default=None)  # type: ignore[arg-type]
    query: str = ""
    overlap: bool = False
    cuda_pixels: bool = False
    sam_cache_hit: bool = False
    reasoner_cache_hit: bool = False
    generated_tokens: int = 0
    image: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.object_masks is None:  # no per-object masks given: none (N = 0) or one
            h, w = self.mask.shape[:2]
            n = len(self.objects)
            if n > 1:
                raise ValueError(f"{n} objects need object_masks ({n} x {h} x {w} bool)")
            self.object_masks = (
                self.mask[None].astype(bool) if n == 1 else np.zeros((0, h, w), bool)
            )
        shape = np.shape(self.object_masks)
        if len(shape) != 3 or shape[1:] != np.shape(self.mask)[:2]:
            h, w = np.shape(self.mask)[:2]
            raise ValueError(f"object_masks must be N x {h} x {w} (the mask's size), got {shape}")

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def plot(self, image: Any = None, **options: Any) -> np.ndarray:
        """The result drawn on ``image`` (default :attr:`image`): an H x W x 3 uint8 RGB array.

        Each object's mask tinted in its own colour with an outline, its box, its points, and a
        label ``"<n>: <query> (IoU <iou>)"``. Options: see :func:`segzero_edge.plotting.plot`.
        Raises ``ValueError`` when there is no image or it does not match the mask's size.
        """
        from .plotting import plot

        return plot(self, image, **options)

    def save(self, path: str | os.PathLike[str], image: Any = None, **options: Any) -> None:
        """Write :meth:`plot` to ``path`` (PNG or JPEG by its suffix), atomically: the file
        appears complete or not at all. Raises ``ValueError`` for another suffix."""
        from .plotting import save

        save(self, path, image, **options)

    def to_json(self, *, masks: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict (``schema_version``: ``result_json.SCHEMA_VERSION``; the
        field names are this class's). ``mask`` and ``object_masks`` are COCO RLE
        (``{"size": [H, W], "counts": str}``, ``pycocotools.mask.encode``); ``masks=False``
        leaves them out. See ``docs/results.md``."""
        from .result_json import to_json

        return to_json(self, masks=masks)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segmentation:
        """The result :meth:`to_json` wrote (with its masks); ``image`` is ``None``. Raises
        ``ValueError`` for another ``schema_version`` or a dict without masks."""
        from .result_json import fields_from_json

        fields = fields_from_json(data)
        fields["objects"] = [ObjectPrompt.from_json(o) for o in fields["objects"]]
        fields["status"] = Status(fields["status"])
        return cls(**fields)
