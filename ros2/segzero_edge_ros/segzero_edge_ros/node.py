"""``ros2 run segzero_edge_ros segzero_edge_node``: Seg-Zero reasoning segmentation as a node.

Subscribes to ``image`` (``sensor_msgs/Image``, or ``CompressedImage`` with ``compressed:=true``;
QoS ``qos_profile_sensor_data``, as camera drivers publish) and to ``query_topic``
(``std_msgs/String``); publishes ``detections`` (``vision_msgs/Detection2DArray``), ``mask``
and ``mask/object_<i>`` (``mono8``), ``overlay`` (``rgb8``) and ``reasoning``
(``std_msgs/String``), each with the input image's header. The model runs on a worker thread
on the newest frame only; frames that arrive meanwhile replace each other (dropped, never
queued). Parameters: :mod:`segzero_edge.ros.node_config`. Written against the ROS 2 Humble
rclpy API.
"""

from __future__ import annotations

import threading
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosidl_runtime_py.utilities import get_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from segzero_edge.pipeline import SegZeroEdge
from segzero_edge.ros.messages import to_ros
from segzero_edge.ros.node_config import PARAMETERS, NodeConfig
from segzero_edge.ros.node_core import NodeCore


class SegZeroEdgeNode(Node):
    """The node: parameters, subscriptions, publishers, and the worker thread."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__("segzero_edge", **node_options)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.config = NodeConfig.from_parameters(values)
        self.model = SegZeroEdge.from_bundle(
            self.config.bundle, segmenter_backend=self.config.segmenter_backend
        )
        self.core = NodeCore(self.model, self.config, self._publish, self.get_logger().warning)
        self._publishers: dict[str, Any] = {}
        self._types: dict[str, type] = {}
        image_type = CompressedImage if self.config.compressed else Image
        self.create_subscription(image_type, "image", self.core.on_image, qos_profile_sensor_data)
        if self.config.query_topic:
            self.create_subscription(
                String, self.config.query_topic, lambda m: self.core.on_query(m.data), 10
            )
        self._running = True
        self._worker = threading.Thread(target=self._work, name="segzero-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"segzero-edge ready: bundle {self.config.bundle}, "
            f"query {self.config.query or '(waiting on ' + self.config.query_topic + ')'}, "
            f"{'track' if self.config.track else 'segment every frame'}"
        )

    def _resolve(self, ros_type: str) -> type:
        cls = self._types.get(ros_type)
        if cls is None:
            cls = self._types[ros_type] = get_message(ros_type)
        return cls

    def _publish(self, topic: str, msg: Any) -> None:
        pub = self._publishers.get(topic)
        if pub is None:
            pub = self.create_publisher(self._resolve(msg.ROS_TYPE), topic, QoSProfile(depth=5))
            self._publishers[topic] = pub
        pub.publish(to_ros(msg, self._resolve))

    def _work(self) -> None:
        while self._running and rclpy.ok():
            self.core.step(timeout=0.2)

    def destroy_node(self) -> None:
        self._running = False
        self.core.close()
        self._worker.join(timeout=30)
        self.model.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = SegZeroEdgeNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
