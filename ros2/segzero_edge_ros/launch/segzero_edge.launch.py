"""``ros2 launch segzero_edge_ros segzero_edge.launch.py bundle:=/path/to/bundle
query:="the cup" image:=/camera/image_raw [track:=true] [rereason_after:=30]
[compressed:=true] [namespace:=segzero]``"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGS = {
    "bundle": ("", "bundle folder (segzero-edge export)"),
    "query": ("", "what to find; empty: wait for one on the query topic"),
    "image": ("/camera/image_raw", "camera topic to segment"),
    "namespace": ("segzero", "namespace of the output topics"),
    "track": ("false", "reason once, then track with SAM2's video memory"),
    "rereason_after": ("0", "with track: re-reason after N lost frames (0 = never)"),
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
                "bundle": arg("bundle"),
                "query": arg("query"),
                "track": ParameterValue(arg("track"), value_type=bool),
                "rereason_after": ParameterValue(arg("rereason_after"), value_type=int),
                "compressed": ParameterValue(arg("compressed"), value_type=bool),
                "publish_overlay": ParameterValue(arg("publish_overlay"), value_type=bool),
                "segmenter_backend": arg("segmenter_backend"),
            }
        ],
    )
    declared = [
        DeclareLaunchArgument(k, default_value=d, description=h) for k, (d, h) in ARGS.items()
    ]
    return LaunchDescription([*declared, node])
