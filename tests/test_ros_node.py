"""The ROS node below rclpy (newest-frame slot, parameters, the node's work on the tiny
bundle) and, where rclpy exists, the node itself on a live topic."""

from __future__ import annotations

import ast
import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge.ros import messages as m
from segzero_edge.ros.latest import LatestSlot
from segzero_edge.ros.node_config import PARAMETERS, NodeConfig
from segzero_edge.ros.node_core import NodeCore

pytestmark = pytest.mark.runtime

ROS_PACKAGE = Path(__file__).resolve().parents[1] / "ros2" / "segzero_edge_ros"
H, W = 32, 48


def test_latest_slot_keeps_the_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.get(timeout=0.01) is None
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.get(timeout=0) == 3 and (slot.received, slot.dropped) == (3, 2)
    assert slot.get(timeout=0.01) is None  # taken: nothing stale left behind
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(slot.get()))
    waiter.start()
    time.sleep(0.05)
    slot.put(4)
    waiter.join(timeout=5)
    assert got == [4]
    waiter = threading.Thread(target=lambda: got.append(slot.get()))
    waiter.start()
    time.sleep(0.05)
    slot.close()  # wakes a waiting get
    waiter.join(timeout=5)
    assert not waiter.is_alive() and got == [4, None]
    with pytest.raises(RuntimeError, match="closed"):
        slot.put(5)


def test_node_config_checks_every_parameter() -> None:
    cfg = NodeConfig.from_parameters({"bundle": "/b", "query": " the cup ", "score_threshold": 1})
    assert (cfg.query, cfg.score_threshold, cfg.rereason_after) == ("the cup", 1.0, None)
    assert NodeConfig.from_parameters({"bundle": "/b", "rereason_after": 30}).rereason_after == 30
    bad = [
        ({}, "parameter bundle is required"),
        ({"bundle": "/b", "track": "yes"}, "parameter track must be a bool"),
        ({"bundle": "/b", "rereason_after": True}, "parameter rereason_after must be a int"),
        ({"bundle": "/b", "rereason_after": -1}, "rereason_after must be >= 0"),
        ({"bundle": "/b", "segmenter_backend": "cuda"}, "segmenter_backend must be one of"),
        ({"bundle": "/b", "query_topic": ""}, "give a query, a query_topic"),
        ({"bundle": "/b", "queries": "x"}, "unknown parameter"),
    ]
    for values, message in bad:
        with pytest.raises(ValueError, match=message):
            NodeConfig.from_parameters(values)
    assert set(PARAMETERS) == {f.name for f in NodeConfig.__dataclass_fields__.values()}


def test_launch_file_passes_every_parameter_with_its_type() -> None:
    """The launch file (read, not run: no launch_ros here) gives the node only parameters it
    declares, each wrapped in ParameterValue with the type of its default (so launch does not
    read ``query:=yes`` as a bool), and declares a launch argument for each one it uses."""
    tree = ast.parse((ROS_PACKAGE / "launch" / "segzero_edge.launch.py").read_text())
    args = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGS"
    )
    (node_params,) = [
        k.value for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "parameters"
    ]
    assert isinstance(node_params, ast.List)
    (params,) = node_params.elts
    assert isinstance(params, ast.Dict)
    given: dict[str, tuple[str, str]] = {}
    for key, value in zip(params.keys, params.values, strict=True):
        assert isinstance(key, ast.Constant) and isinstance(value, ast.Call)
        assert getattr(value.func, "id", "") == "ParameterValue", key.value
        (kw,) = value.keywords
        assert kw.arg == "value_type" and isinstance(kw.value, ast.Name)
        (launch_arg,) = value.args
        assert isinstance(launch_arg, ast.Call) and isinstance(launch_arg.args[0], ast.Constant)
        given[key.value] = (kw.value.id, launch_arg.args[0].value)
    assert set(given) <= set(PARAMETERS) and {"bundle", "query", "track"} <= set(given)
    for name, (value_type, launch_arg) in given.items():
        assert value_type == type(PARAMETERS[name]).__name__, name
        assert launch_arg == name and launch_arg in args, name
        default = args[name][0]  # the launch default parses to the node's default
        assert (PARAMETERS[name] if value_type == "str" else str(PARAMETERS[name]).lower()) == (
            default if value_type == "str" else default.lower()
        ), name
    assert set(args) - set(given) == {"image", "namespace"}  # remapping and namespace


def _image(i: int, encoding: str = "rgb8") -> m.Image:
    rgb = np.full((H, W, 3), 30 + 10 * i, np.uint8)
    rgb[8:20, 10:26] = (200, 40, 40)
    header = m.Header(stamp=m.Time(sec=100 + i, nanosec=5), frame_id="cam")
    return m.Image(
        header=header, height=H, width=W, encoding=encoding, step=3 * W, data=rgb.tobytes()
    )


def test_node_core_works_on_the_newest_frame_only(tiny_bundle: Path) -> None:
    from segzero_edge.pipeline import SegZeroEdge

    sent: list[tuple[str, Any]] = []
    logged: list[str] = []
    with SegZeroEdge.from_bundle(tiny_bundle, max_new_tokens=48) as model:
        cfg = NodeConfig.from_parameters({"bundle": str(tiny_bundle), "query": "the red box"})
        core = NodeCore(model, cfg, lambda t, msg: sent.append((t, msg)), logged.append)
        for i in range(3):  # three frames arrive while the model is busy
            core.on_image(_image(i))
        assert core.step(timeout=1) is True
        assert core.slot.dropped == 2 and core.processed == 1
        topics = [t for t, _ in sent]
        assert topics[:2] == ["detections", "mask"] and "overlay" in topics
        assert "reasoning" in topics
        for _, msg in sent:
            header = msg.header if hasattr(msg, "header") else None
            assert header is None or header == _image(2).header  # the newest frame's
        mask = dict(sent)["mask"]
        assert (mask.encoding, mask.height, mask.width) == ("mono8", H, W)
        assert core.step(timeout=0.01) is False  # nothing new: nothing is redone
        sent.clear()
        core.on_image(_image(3, encoding="bayer_rggb8"))
        assert core.step(timeout=1) is False and sent == []
        assert "bayer_rggb8" in logged[-1]
        core.on_query("   ")
        assert "ignored query" in logged[-1]
        core.on_query("the background")
        core.on_image(_image(4))
        assert core.step(timeout=1) is True
        assert core.processor is not None and core.processor.queries == ["the background"]
        core.close()
        core.on_image(_image(5))  # a late callback after close is ignored
        assert core.step(timeout=0.01) is False


def test_node_core_publishes_one_mask_per_object_when_segmenting(bundle_segmenter: Any) -> None:
    """Segment mode, a two-object answer (fixed reasoner, the tiny bundle's SAM2): one
    ``mask/object_<i>`` mono8 message per object, each the result's own mask, beside the
    union."""
    from tests.fixtures.results import fixed_model

    sent: list[tuple[str, Any]] = []
    model = fixed_model(bundle_segmenter)
    cfg = NodeConfig.from_parameters({"bundle": "unused", "query": "the red box"})
    core = NodeCore(model, cfg, lambda t, msg: sent.append((t, msg)))
    core.on_image(_image(0))
    assert core.step(timeout=1) is True
    got = dict(sent)
    assert sorted(t for t in got if t.startswith("mask/")) == ["mask/object_0", "mask/object_1"]
    rgb = np.frombuffer(_image(0).data, np.uint8).reshape(H, W, 3)
    expected = model.segment(rgb, "the red box")
    masks = [
        np.frombuffer(got[f"mask/object_{i}"].data, np.uint8).reshape(H, W) == 255 for i in range(2)
    ]
    for i, mask in enumerate(masks):
        assert got[f"mask/object_{i}"].encoding == "mono8"
        assert got[f"mask/object_{i}"].header == _image(0).header
        assert np.array_equal(mask, expected.object_masks[i])
    union = np.frombuffer(got["mask"].data, np.uint8).reshape(H, W) == 255
    assert np.array_equal(union, masks[0] | masks[1])
    core.close()


def test_node_core_waits_for_a_query(tiny_bundle: Path) -> None:
    from segzero_edge.pipeline import SegZeroEdge

    sent: list[tuple[str, Any]] = []
    with SegZeroEdge.from_bundle(tiny_bundle, max_new_tokens=48) as model:
        cfg = NodeConfig.from_parameters({"bundle": str(tiny_bundle), "track": True})
        core = NodeCore(model, cfg, lambda t, msg: sent.append((t, msg)))
        core.on_image(_image(0))
        assert core.step(timeout=1) is False and sent == [] and core.processor is None
        core.on_query("the red box")
        core.on_image(_image(1))
        assert core.step(timeout=1) is True and core.processor is not None
        assert core.processor.track and "reasoning" in [t for t, _ in sent]
        sent.clear()
        core.on_image(_image(2))
        assert core.step(timeout=1) is True
        assert "reasoning" not in [t for t, _ in sent]  # tracked: the reasoner did not run
        core.close()


@pytest.mark.skipif(
    importlib.util.find_spec("rclpy") is None or importlib.util.find_spec("vision_msgs") is None,
    reason="needs rclpy and vision_msgs (a sourced ROS 2 Humble); pip cannot install them here",
)
def test_rclpy_node_segments_a_live_topic(tiny_bundle: Path) -> None:
    import rclpy
    import rclpy.executors
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    sys.path.insert(0, str(ROS_PACKAGE))
    from segzero_edge_ros.node import SegZeroEdgeNode

    rclpy.init()
    try:
        params = [
            Parameter("bundle", value=str(tiny_bundle)),
            Parameter("query", value="the red box"),
        ]
        node = SegZeroEdgeNode(parameter_overrides=params)
        helper = rclpy.create_node("segzero_test_helper")
        got: list[Any] = []
        helper.create_subscription(Detection2DArray, "detections", got.append, 10)
        pub = helper.create_publisher(Image, "image", 10)
        msg = m.to_ros(_image(7), _ros)
        executor = rclpy.executors.MultiThreadedExecutor()
        executor.add_node(node)
        executor.add_node(helper)
        deadline = time.monotonic() + 120
        while not got and time.monotonic() < deadline:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.5)
        assert got, "no Detection2DArray within 120 s"
        assert got[0].header.stamp.sec == 107 and got[0].header.frame_id == "cam"
        node.destroy_node()
        helper.destroy_node()
    finally:
        rclpy.try_shutdown()


def _ros(name: str) -> type:
    from rosidl_runtime_py.utilities import get_message

    return get_message(name)
