"""ROS 2 input and output without a ROS install: messages, images, results, rosbag2 files.

- :mod:`.messages`: plain dataclasses shaped like the ROS 2 Humble messages used here;
- :mod:`.images`: ``sensor_msgs/Image`` / ``CompressedImage`` -> a frame, masks -> ``mono8``;
- :mod:`.results`: a result -> ``Detection2DArray``, masks, overlay, reasoning;
- :mod:`.bag`: rosbag2 MCAP files (the ``[ros]`` extra: ``mcap``, ``mcap-ros2-support``);
- :mod:`.latest`: the newest-frame slot a live source hands frames through;
- :mod:`.node_config`: the ROS node's parameters, checked.

Nothing here imports a ROS package; the rclpy node lives in ``ros2/segzero_edge_ros``.
"""
