"""ROS 2 message definitions (``.msg`` text) of the types segzero-edge reads and writes.

The field lists follow the upstream definitions for ROS 2 Humble: ``ros2/common_interfaces``
(``std_msgs``, ``sensor_msgs``, ``geometry_msgs``), ``ros2/rcl_interfaces``
(``builtin_interfaces``) and ``ros-perception/vision_msgs`` 4.x (``BoundingBox2D.center`` is a
``vision_msgs/Pose2D``; ``Detection2D`` has ``id`` and no ``source_img``). Comments are left
out. :func:`schema_text` joins a type's definition with those it depends on, as rosbag2 stores
a schema in an MCAP file (dependencies after a line of 80 ``=`` and ``MSG: pkg/Type``), which
is what ``ros2 bag play``, Foxglove and ``mcap-ros2-support`` read.
"""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "std_msgs/String": "string data",
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
        "uint8 is_bigendian\nuint32 step\nuint8[] data"
    ),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance",
    "vision_msgs/Point2D": "float64 x\nfloat64 y",
    "vision_msgs/Pose2D": "vision_msgs/Point2D position\nfloat64 theta",
    "vision_msgs/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y",
    "vision_msgs/ObjectHypothesis": "string class_id\nfloat64 score",
    "vision_msgs/ObjectHypothesisWithPose": (
        "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose"
    ),
    "vision_msgs/Detection2D": (
        "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id"
    ),
    "vision_msgs/Detection2DArray": "std_msgs/Header header\nDetection2D[] detections",
}
"""``pkg/Type`` -> its fields, one per line (a type without a package is of the same package)."""

_PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}  # fmt: skip
_SEPARATOR = "=" * 80


def short_name(ros_type: str) -> str:
    """``sensor_msgs/msg/Image`` or ``sensor_msgs/Image`` -> ``sensor_msgs/Image``."""
    parts = ros_type.split("/")
    return f"{parts[0]}/{parts[-1]}" if len(parts) in (2, 3) else ros_type


def full_name(ros_type: str) -> str:
    """``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (rosbag2's topic type name)."""
    pkg, name = short_name(ros_type).split("/")
    return f"{pkg}/msg/{name}"


def _dependencies(ros_type: str) -> list[str]:
    pkg = ros_type.split("/")[0]
    out: list[str] = []
    for line in DEFINITIONS[ros_type].splitlines():
        ftype = line.split()[0].split("[")[0]
        if ftype in _PRIMITIVES:
            continue
        out.append(ftype if "/" in ftype else f"{pkg}/{ftype}")
    return out


def schema_text(ros_type: str) -> str:
    """The ``ros2msg`` schema of ``ros_type`` with every type it uses, depth first.

    Raises ``KeyError`` for a type not in :data:`DEFINITIONS`.
    """
    root = short_name(ros_type)
    order: list[str] = []

    def visit(t: str) -> None:
        for dep in _dependencies(t):
            if dep not in order and dep != root:
                order.append(dep)
                visit(dep)

    visit(root)
    parts = [DEFINITIONS[root]]
    parts += [f"{_SEPARATOR}\nMSG: {t}\n{DEFINITIONS[t]}" for t in order]
    return "\n".join(parts) + "\n"
