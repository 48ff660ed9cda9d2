"""``ros2 launch segzero_edge_ros segzero_edge.launch.py bundle:=/path/to/bundle
query:="the cup" image:=/camera/image_raw [track:=true] [rereason_after:=30]
[compressed:=true] [namespace:=segzero]``

Every node parameter is given with its type (``ParameterValue(..., value_type=...)``), so a
query such as ``query:=yes`` or ``query:=42`` stays a string instead of being read as YAML.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGS = {
    "bundle": ("", "bundle folder (segzero-edge export)"),
    "query": ("", "what to find; empty: wait for one on the query topic"),
    "query_topic": ("query", "std_msgs/String topic that replaces the query"),
    "image": ("/camera/image_raw", "camera topic to segment"),
    "namespace": ("segzero", "namespace of the output topics"),
    "track": ("false", "reason once, then track with SAM2's video memory"),
    "rereason_after": ("0", "with track: re-reason after N lost frames (0 = never)"),
    "score_threshold": ("0.0", "with track: object score logit at or below which it is lost"),
    "compressed": ("false", "subscribe to sensor_msgs/CompressedImage"),
    "publish_overlay": ("true", "publish the rgb8 overlay"),
    "segmenter_backend": ("auto", "auto, tensorrt or onnxruntime"),
}


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    node = Node(
        package="segzero_edge_ros",
        executable="segzero_edge_node",
        namespace=arg("namespace"),
        output="screen",
        remappings=[("image", arg("image"))],
        parameters=[
            {
                "bundle": ParameterValue(arg("bundle"), value_type=str),
                "query": ParameterValue(arg("query"), value_type=str),
                "query_topic": ParameterValue(arg("query_topic"), value_type=str),
                "track": ParameterValue(arg("track"), value_type=bool),
                "rereason_after": ParameterValue(arg("rereason_after"), value_type=int),
                "score_threshold": ParameterValue(arg("score_threshold"), value_type=float),
                "compressed": ParameterValue(arg("compressed"), value_type=bool),
                "publish_overlay": ParameterValue(arg("publish_overlay"), value_type=bool),
                "segmenter_backend": ParameterValue(arg("segmenter_backend"), value_type=str),
            }
        ],
    )
    declared = [
        DeclareLaunchArgument(k, default_value=d, description=h) for k, (d, h) in ARGS.items()
    ]
    return LaunchDescription([*declared, node])
