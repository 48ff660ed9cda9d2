"""A segmentation or tracking result as ROS 2 messages, following the Jetson ROS packages.

Isaac ROS Segment Anything and ROS2-NanoOWL publish boxes as ``vision_msgs/Detection2DArray``
and masks as ``mono8`` ``sensor_msgs/Image`` (vision_msgs has no mask type), with the input
image's header copied; this does the same:

- ``detections``: one ``Detection2D`` per object, ``id`` its index (``"0"``, ``"1"``, ...,
  the reasoner's order, stable while tracking), ``bbox`` the box's centre and size in pixels
  of the input image (``size = x2 - x1`` in the box convention of :mod:`segzero_edge.types`;
  ``theta`` 0). ``results`` holds one
  ``ObjectHypothesisWithPose`` per point the reasoner gave (``class_id`` the query, ``score``
  SAM2's IoU prediction of the mask, ``pose.pose.position`` the point's x, y in pixels, z 0);
  an object without points (tracked frames) gets one with the box centre. Lost tracked objects
  are left out (their index stays theirs).
- ``masks``: the union of every object's mask, and ``object_masks`` one per object
  (``Segmentation.object_masks``: every object of a ``segment()`` result, the present
  objects of a tracked frame).
- ``overlay``: ``rgb8`` picture of the frame with masks, boxes, points and labels
  (:meth:`Segmentation.plot <segzero_edge.types.Segmentation.plot>`).
- ``reasoning``: the ``<think>`` text as ``std_msgs/String``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tracking.result import TrackedSegmentation
from ..types import Box, Segmentation
from ..types import Point as PixelPoint
from .images import mask_message, rgb_message
from .messages import (
    BoundingBox2D,
    Detection2D,
    Detection2DArray,
    Header,
    Image,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    Point,
    Point2D,
    Pose,
    Pose2D,
    PoseWithCovariance,
    String,
)


@dataclass
class ResultMessages:
    """The messages of one result, all with the input image's header."""

    detections: Detection2DArray
    mask: Image
    object_masks: dict[int, Image] = field(default_factory=dict)
    overlay: Image | None = None
    reasoning: String | None = None


def _box_message(box: tuple[int, int, int, int]) -> BoundingBox2D:
    left, top, right, bottom = (float(v) for v in box)  # ordered: the result's convention
    center = Pose2D(position=Point2D(x=(left + right) / 2, y=(top + bottom) / 2))
    return BoundingBox2D(center=center, size_x=right - left, size_y=bottom - top)


def _hypothesis(query: str, score: float, x: float, y: float) -> ObjectHypothesisWithPose:
    pose = PoseWithCovariance(pose=Pose(position=Point(x=float(x), y=float(y))))
    return ObjectHypothesisWithPose(
        hypothesis=ObjectHypothesis(class_id=query, score=float(score)), pose=pose
    )


def _objects(result: Segmentation) -> list[tuple[int, Box, tuple[PixelPoint, ...], float]]:
    """``(index, box, points, IoU prediction)`` of each object the result shows (a tracked
    frame: the present ones)."""
    ious = result.iou_predictions
    return [
        (i, o.box, o.points, float(ious[i]) if i < len(ious) else 0.0)
        for i, o in enumerate(result.objects)
        if o.box is not None and _shown(result, i)
    ]


def _shown(result: Segmentation, index: int) -> bool:
    """Whether object ``index`` is published: always, except a lost tracked object."""
    return not isinstance(result, TrackedSegmentation) or result.present[index]


def detections_message(result: Segmentation, header: Header, query: str) -> Detection2DArray:
    """The ``vision_msgs/Detection2DArray`` of ``result`` (see the module docstring)."""
    detections = []
    for index, box, points, score in _objects(result):
        bbox = _box_message(box)
        centre = bbox.center.position
        pts = points or ((centre.x, centre.y),)
        detections.append(
            Detection2D(
                header=header,
                results=[_hypothesis(query, score, x, y) for x, y in pts],
                bbox=bbox,
                id=str(index),
            )
        )
    return Detection2DArray(header=header, detections=detections)


def object_masks(result: Segmentation) -> dict[int, np.ndarray]:
    """Object index -> its H x W bool mask (every object; a tracked frame's present ones)."""
    return {i: m for i, m in enumerate(result.object_masks) if _shown(result, i)}


def result_messages(
    result: Segmentation,
    header: Header,
    query: str,
    *,
    image: np.ndarray | None = None,
    reasoning: bool = True,
) -> ResultMessages:
    """Every message of ``result``; ``image`` (H x W x 3 uint8 RGB, the input frame) adds the
    overlay; ``reasoning=False`` leaves the reasoning out (a tracked frame that did not
    reason)."""
    return ResultMessages(
        detections=detections_message(result, header, query),
        mask=mask_message(result.mask, header),
        object_masks={i: mask_message(m, header) for i, m in object_masks(result).items()},
        overlay=None if image is None else rgb_message(result.plot(image), header),
        reasoning=String(data=result.reasoning) if reasoning else None,
    )
