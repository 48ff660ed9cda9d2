"""ROS 2 node for segzero-edge (see :mod:`segzero_edge_ros.node`)."""
