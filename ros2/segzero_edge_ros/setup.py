"""ament_python package of the segzero-edge ROS 2 node (``colcon build``; the segzero-edge
Python package itself is installed with pip into the Python that ROS uses)."""

from glob import glob

from setuptools import setup

PACKAGE = "segzero_edge_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="ROS 2 node for segzero-edge reasoning segmentation",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"segzero_edge_node = {PACKAGE}.node:main"]},
)
