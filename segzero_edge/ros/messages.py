"""Plain Python twins of the ROS 2 messages segzero-edge reads and writes (no ROS import).

Each class has the fields of its ROS 2 Humble message, same names, same order (see
:mod:`segzero_edge.ros.definitions` for the upstream sources), and ``ROS_TYPE``, the rosbag2
type name. The bag layer writes them to MCAP as they are (``mcap-ros2-support`` reads fields
by attribute); the node copies them into rclpy messages with :func:`to_ros`; messages read
from either come back with :func:`from_ros`.

Units: image sizes, ``step`` and box fields are pixels / bytes; ``Time`` is seconds and
nanoseconds of the ROS clock (``nanosec`` < 1e9).
"""

from __future__ import annotations

import array
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Time:
    """``builtin_interfaces/msg/Time``."""

    ROS_TYPE: ClassVar[str] = "builtin_interfaces/msg/Time"
    sec: int = 0
    nanosec: int = 0

    @classmethod
    def from_ns(cls, ns: int) -> Time:
        """A time from integer nanoseconds (e.g. an MCAP ``log_time``)."""
        sec, nanosec = divmod(int(ns), 1_000_000_000)
        return cls(sec=sec, nanosec=nanosec)

    def to_ns(self) -> int:
        return int(self.sec) * 1_000_000_000 + int(self.nanosec)


@dataclass
class Header:
    """``std_msgs/msg/Header``: acquisition time and the camera's optical frame id."""

    ROS_TYPE: ClassVar[str] = "std_msgs/msg/Header"
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Image:
    """``sensor_msgs/msg/Image``: ``height`` rows of ``step`` bytes each in ``data``."""

    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/Image"
    header: Header = field(default_factory=Header)
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: bytes = b""


@dataclass
class CompressedImage:
    """``sensor_msgs/msg/CompressedImage``: ``format`` such as ``jpeg`` or ``png`` (image_transport
    may write ``rgb8; jpeg compressed bgr8``)."""

    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/CompressedImage"
    header: Header = field(default_factory=Header)
    format: str = ""
    data: bytes = b""


@dataclass
class String:
    """``std_msgs/msg/String``."""

    ROS_TYPE: ClassVar[str] = "std_msgs/msg/String"
    data: str = ""


@dataclass
class Point:
    """``geometry_msgs/msg/Point``."""

    ROS_TYPE: ClassVar[str] = "geometry_msgs/msg/Point"
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Quaternion:
    """``geometry_msgs/msg/Quaternion`` (identity by default, as upstream)."""

    ROS_TYPE: ClassVar[str] = "geometry_msgs/msg/Quaternion"
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    w: float = 1.0


@dataclass
class Pose:
    """``geometry_msgs/msg/Pose``."""

    ROS_TYPE: ClassVar[str] = "geometry_msgs/msg/Pose"
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseWithCovariance:
    """``geometry_msgs/msg/PoseWithCovariance`` (``covariance``: 36 float64, row-major 6 x 6)."""

    ROS_TYPE: ClassVar[str] = "geometry_msgs/msg/PoseWithCovariance"
    pose: Pose = field(default_factory=Pose)
    covariance: list[float] = field(default_factory=lambda: [0.0] * 36)


@dataclass
class Point2D:
    """``vision_msgs/msg/Point2D`` (pixels)."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/Point2D"
    x: float = 0.0
    y: float = 0.0


@dataclass
class Pose2D:
    """``vision_msgs/msg/Pose2D`` (pixels; ``theta`` radians, counter-clockwise)."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/Pose2D"
    position: Point2D = field(default_factory=Point2D)
    theta: float = 0.0


@dataclass
class BoundingBox2D:
    """``vision_msgs/msg/BoundingBox2D``: centre and full size in pixels."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/BoundingBox2D"
    center: Pose2D = field(default_factory=Pose2D)
    size_x: float = 0.0
    size_y: float = 0.0


@dataclass
class ObjectHypothesis:
    """``vision_msgs/msg/ObjectHypothesis``."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/ObjectHypothesis"
    class_id: str = ""
    score: float = 0.0


@dataclass
class ObjectHypothesisWithPose:
    """``vision_msgs/msg/ObjectHypothesisWithPose``."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/ObjectHypothesisWithPose"
    hypothesis: ObjectHypothesis = field(default_factory=ObjectHypothesis)
    pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)


@dataclass
class Detection2D:
    """``vision_msgs/msg/Detection2D`` (Humble, vision_msgs 4.x)."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/Detection2D"
    header: Header = field(default_factory=Header)
    results: list[ObjectHypothesisWithPose] = field(default_factory=list)
    bbox: BoundingBox2D = field(default_factory=BoundingBox2D)
    id: str = ""


@dataclass
class Detection2DArray:
    """``vision_msgs/msg/Detection2DArray``."""

    ROS_TYPE: ClassVar[str] = "vision_msgs/msg/Detection2DArray"
    header: Header = field(default_factory=Header)
    detections: list[Detection2D] = field(default_factory=list)


MESSAGE_TYPES: dict[str, type] = {
    cls.ROS_TYPE: cls
    for cls in (
        Time, Header, Image, CompressedImage, String, Point, Quaternion, Pose,
        PoseWithCovariance, Point2D, Pose2D, BoundingBox2D, ObjectHypothesis,
        ObjectHypothesisWithPose, Detection2D, Detection2DArray,
    )
}  # fmt: skip
"""rosbag2 type name (``pkg/msg/Type``) -> its class here."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_ros(cls: type, msg: Any) -> Any:
    """A ``cls`` instance (a class of this module) with the fields of ``msg``, read by
    attribute: an rclpy message, a message ``mcap-ros2-support`` decoded, or one of these.

    ``uint8[]`` fields become ``bytes`` (rclpy gives ``array.array``, the MCAP decoder
    ``bytes``/``memoryview``). Raises ``ValueError`` naming a missing field.
    """
    kwargs: dict[str, Any] = {}
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        try:
            value = getattr(msg, f.name)
        except AttributeError:
            raise ValueError(
                f"{type(msg).__name__} has no field {f.name!r} of {cls.ROS_TYPE}"  # type: ignore[attr-defined]
            ) from None
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = from_ros(hint, value)  # type: ignore[arg-type]
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            kwargs[f.name] = [
                from_ros(item, v)
                if isinstance(item, type) and dataclasses.is_dataclass(item)
                else v
                for v in value
            ]
        elif hint is bytes:
            kwargs[f.name] = bytes(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def to_ros(msg: Any, resolve: Callable[[str], type]) -> Any:
    """``msg`` (a class of this module) as an instance of ``resolve(msg.ROS_TYPE)``, filled
    field by field (nested messages and lists of them too).

    ``resolve`` maps a rosbag2 type name to a message class, e.g. to rclpy's
    ``sensor_msgs.msg.Image`` through ``rosidl_runtime_py.utilities.get_message``. ``bytes``
    fields (``uint8[]``) are given as ``array.array("B")``, the type rclpy keeps them in.
    """
    out = resolve(msg.ROS_TYPE)()
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_ros(value, resolve)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [to_ros(v, resolve) for v in value]
        elif isinstance(value, bytes):  # rclpy takes uint8[] as array('B') without a per-byte check
            value = array.array("B", value)
        setattr(out, f.name, value)
    return out
