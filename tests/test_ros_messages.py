"""The ROS message layer through real CDR serialization: images in every encoding read,
compressed images, and result messages, written to a rosbag2 MCAP with mcap-ros2-support's
own writer, read back with the bag layer, compared field by field and decoded to pixels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mcap_ros2", reason="needs the [ros] extra (mcap, mcap-ros2-support)")

from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer as Ros2Writer
from PIL import Image as PILImage

from segzero_edge.image import NV12Frame
from segzero_edge.pixels import nv12_to_rgb, rgb_to_nv12
from segzero_edge.ros import bag
from segzero_edge.ros import messages as m
from segzero_edge.ros.definitions import schema_text
from segzero_edge.ros.images import (
    ENCODINGS,
    compressed_to_rgb,
    image_to_frame,
    image_to_rgb,
    mask_message,
)
from segzero_edge.ros.results import detections_message, result_messages
from segzero_edge.tracker import TrackedSegmentation
from segzero_edge.types import ObjectPrompt, Segmentation, Status

pytestmark = pytest.mark.runtime

H, W = 6, 10
PAD = 7  # bytes of junk after every row
JUNK = 0xAB


def _blocky_rgb(seed: int = 0) -> np.ndarray:
    """An H x W RGB image constant on 2 x 2 blocks (so 4:2:0 and 4:2:2 chroma lose nothing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 220, size=(H // 2, W // 2, 3), dtype=np.uint8)
    return small.repeat(2, axis=0).repeat(2, axis=1)


def _padded(rows: np.ndarray, pad: int = PAD) -> tuple[bytes, int]:
    """Rows of bytes with ``pad`` junk bytes after each -> (data, step)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(rows.shape[0], -1)
    junk = np.full((rows.shape[0], pad), JUNK, dtype=np.uint8)
    out = np.concatenate([rows, junk], axis=1)
    return out.tobytes(), out.shape[1]


def _header(i: int = 0) -> m.Header:
    return m.Header(
        stamp=m.Time(sec=1_700_000_000 + i, nanosec=123_456_789), frame_id="cam_optical"
    )


def _image(encoding: str, rows: np.ndarray, bigendian: int = 0, height: int = H) -> m.Image:
    data, step = _padded(rows)
    return m.Image(
        header=_header(),
        height=height,
        width=W,
        encoding=encoding,
        is_bigendian=bigendian,
        step=step,
        data=data,
    )


def _yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """4:2:2 bytes of ``rgb`` via its NV12 planes (chroma rows repeated), so decoding must match
    the NV12 decode of the same planes exactly."""
    nv12 = rgb_to_nv12(rgb)
    y, uv = nv12[:H], nv12[H:].reshape(H // 2, W // 2, 2).repeat(2, axis=0)
    u, v = uv[..., 0], uv[..., 1]
    y0, y1 = y[:, 0::2], y[:, 1::2]
    quad = (y0, u, y1, v) if order == "yuyv" else (u, y0, v, y1)
    return np.stack(quad, axis=-1).reshape(H, W * 2)


def _cases() -> dict[str, tuple[m.Image, np.ndarray, int]]:
    """name -> (message, expected RGB, tolerance)."""
    rgb = _blocky_rgb()
    gray = rgb[..., 1]
    rgba = np.concatenate([rgb, np.full((H, W, 1), 77, np.uint8)], axis=2)
    nv12 = rgb_to_nv12(rgb)
    nv12_rgb = nv12_to_rgb(nv12)
    nv21 = nv12.copy()
    nv21[H:] = nv12[H:].reshape(H // 2, W // 2, 2)[..., ::-1].reshape(H // 2, W)
    gray3 = np.repeat(gray[..., None], 3, axis=2)
    wide = rgb.astype(np.uint16) * 257
    cases = {
        "rgb8": (_image("rgb8", rgb), rgb, 0),
        "bgr8": (_image("bgr8", rgb[..., ::-1]), rgb, 0),
        "rgba8": (_image("rgba8", rgba), rgb, 0),
        "bgra8": (_image("bgra8", rgba[..., [2, 1, 0, 3]]), rgb, 0),
        "mono8": (_image("mono8", gray), gray3, 0),
        "mono8-bigendian-flag": (_image("mono8", gray, bigendian=1), gray3, 0),
        "mono16-le": (_image("mono16", (gray.astype("<u2") * 257).view(np.uint8)), gray3, 0),
        "mono16-be": (_image("mono16", (gray.astype(">u2") * 257).view(np.uint8), 1), gray3, 0),
        "rgb16-be": (_image("rgb16", wide.astype(">u2").view(np.uint8), 1), rgb, 0),
        "bgr16-le": (_image("bgr16", wide[..., ::-1].astype("<u2").view(np.uint8)), rgb, 0),
        "nv12": (_image("nv12", nv12), nv12_rgb, 0),
        "nv21": (_image("nv21", nv21), nv12_rgb, 0),
    }
    for name in ("yuyv", "yuv422_yuy2", "yuy2", "uyvy", "yuv422"):
        order = "uyvy" if name in ("uyvy", "yuv422") else "yuyv"
        cases[name] = (_image(name, _yuv422(rgb, order)), nv12_rgb, 0)
    return cases


CASES = _cases()


def _roundtrip(messages: list[tuple[str, Any]]) -> list[tuple[str, Any, Any]]:
    """Write ``(topic, message)`` pairs with mcap-ros2-support's writer, read them back with
    the bag layer: ``(topic, schema name, decoded object)`` in order."""
    buf = io.BytesIO()
    writer = Ros2Writer(buf)
    schemas: dict[str, Any] = {}
    for i, (topic, msg) in enumerate(messages):
        t = msg.ROS_TYPE
        if t not in schemas:
            schemas[t] = writer.register_msgdef(t, schema_text(t))
        writer.write_message(topic, schemas[t], msg, log_time=1000 + i, publish_time=1000 + i)
    writer.finish()
    buf.seek(0)
    reader = bag.open_reader(buf)
    factory = DecoderFactory()
    out = []
    for schema, channel, message in bag.iter_records(reader):
        decode = factory.decoder_for(channel.message_encoding, schema)
        out.append((channel.topic, schema.name, decode(message.data)))
    return out


def test_every_encoding_survives_cdr_and_decodes_to_its_pixels() -> None:
    names = list(CASES)
    back = _roundtrip([(f"/cam/{n.replace('-', '_')}", CASES[n][0]) for n in names])
    assert [t for t, _, _ in back] == [f"/cam/{n.replace('-', '_')}" for n in names]
    for name, (_topic, schema_name, raw) in zip(names, back, strict=True):
        sent, expected, tol = CASES[name]
        assert schema_name == "sensor_msgs/msg/Image"
        got = m.from_ros(m.Image, raw)
        # field by field: header, sizes, encoding, flag, step, every byte (padding included)
        assert got.header == sent.header, name
        assert (got.height, got.width, got.encoding) == (sent.height, sent.width, sent.encoding)
        assert (got.is_bigendian, got.step) == (sent.is_bigendian, sent.step), name
        assert got.data == sent.data and got.step > W, name
        rgb = image_to_rgb(got)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8, name
        diff = np.abs(rgb.astype(int) - expected.astype(int)).max()
        assert diff <= tol, f"{name}: max diff {diff}"
    # every encoding the layer claims to read was exercised, aliases included
    assert {c[0].encoding for c in CASES.values()} == set(ENCODINGS)


def test_yuv_and_nv12_match_the_source_image() -> None:
    """Independent of the NV12 decoder: a 2x2-blocky image comes back within BT.601 rounding."""
    src = _blocky_rgb()
    for name in ("nv12", "nv21", "yuyv", "uyvy"):
        got = image_to_rgb(CASES[name][0])
        assert np.abs(got.astype(int) - src.astype(int)).max() <= 3, name


def test_nv12_is_a_frame_over_the_message_bytes() -> None:
    msg = CASES["nv12"][0]
    frame = image_to_frame(msg)
    assert isinstance(frame, NV12Frame) and frame.hw == (H, W)
    assert frame.y.strides[0] == msg.step  # the padded rows are read in place, not copied


def test_decoder_reads_image_records_of_the_bag_layer() -> None:
    sent = CASES["bgra8"][0]
    buf = io.BytesIO()
    w = bag.BagWriter(buf)
    w.write("/camera/image_raw", sent, 5)
    w.finish()
    buf.seek(0)
    reader = bag.open_reader(buf)
    assert bag.topic_types(reader) == {"/camera/image_raw": ("sensor_msgs/msg/Image", 1)}
    ((schema, channel, message),) = list(bag.iter_records(reader))
    got = bag.ImageDecoder()(schema, channel, message.data)
    assert got == sent and channel.message_encoding == "cdr" and schema.encoding == "ros2msg"


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8"])
def test_compressed_images(fmt: str) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None]
    rgb[..., 2] = np.linspace(255, 0, 48, dtype=np.uint8)[:, None]
    buf = io.BytesIO()
    kind = "JPEG" if "jpeg" in fmt else "PNG"
    PILImage.fromarray(rgb).save(buf, format=kind, quality=95)
    sent = m.CompressedImage(header=_header(4), format=fmt, data=buf.getvalue())
    ((_topic, schema_name, raw),) = _roundtrip([("/cam/compressed", sent)])
    got = m.from_ros(m.CompressedImage, raw)
    assert schema_name == "sensor_msgs/msg/CompressedImage" and got == sent
    decoded = compressed_to_rgb(got)
    err = np.abs(decoded.astype(int) - rgb.astype(int))
    assert decoded.shape == rgb.shape
    assert err.max() == 0 if kind == "PNG" else err.mean() < 3


def test_unknown_encodings_and_bad_layouts_are_named() -> None:
    good = CASES["rgb8"][0]
    for enc in ("bayer_rggb8", "32FC1", "16UC1", ""):
        bad = m.Image(**{**good.__dict__, "encoding": enc})
        with pytest.raises(ValueError, match=f"encoding '{enc}'"):
            image_to_frame(bad)
    short = m.Image(**{**good.__dict__, "step": W * 3 - 1})
    with pytest.raises(ValueError, match=r"step .* shorter than a row"):
        image_to_frame(short)
    cut = m.Image(**{**good.__dict__, "data": good.data[:-1]})
    with pytest.raises(ValueError, match="needs"):
        image_to_frame(cut)
    odd = m.Image(**{**CASES["yuyv"][0].__dict__, "width": W - 1})
    with pytest.raises(ValueError, match="even width"):
        image_to_frame(odd)
    with pytest.raises(ValueError, match="format 'h264'"):
        compressed_to_rgb(m.CompressedImage(format="h264", data=b"\x00"))
    with pytest.raises(ValueError, match="compressedDepth"):
        compressed_to_rgb(m.CompressedImage(format="16UC1; compressedDepth png", data=b""))
    with pytest.raises(ValueError, match="cannot decode"):
        compressed_to_rgb(m.CompressedImage(format="jpeg", data=b"not a jpeg"))


def _segmentation() -> Segmentation:
    object_masks = np.zeros((2, H, W), bool)
    object_masks[0, 1:4, 2:6] = True
    object_masks[1, 4:6, 7:9] = True
    objects = [ObjectPrompt((2, 1, 5, 3), ((3, 2), (4, 2))), ObjectPrompt((7, 4, 9, 5), ())]
    return Segmentation(
        mask=object_masks.any(axis=0),
        object_masks=object_masks,
        objects=objects,
        reasoning="the mug is left",
        answer_raw="",
        status=Status.OK,
        iou_predictions=[0.9, 0.5],
        query="the mug",
    )


def test_detections_follow_vision_msgs() -> None:
    det = detections_message(_segmentation(), _header(2), "the mug")
    assert det.header == _header(2) and [d.id for d in det.detections] == ["0", "1"]
    first, second = det.detections
    assert first.header == _header(2)
    c = first.bbox.center
    assert (c.position.x, c.position.y, c.theta) == (3.5, 2.0, 0.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (3.0, 2.0)
    # one hypothesis per point: the query, the mask score, the point in pixels
    assert [(r.pose.pose.position.x, r.pose.pose.position.y) for r in first.results] == [
        (3.0, 2.0),
        (4.0, 2.0),
    ]
    assert {(r.hypothesis.class_id, r.hypothesis.score) for r in first.results} == {
        ("the mug", 0.9)
    }
    # no points -> the box centre
    assert (second.bbox.size_x, second.bbox.size_y) == (2.0, 1.0)
    assert [(r.pose.pose.position.x, r.pose.pose.position.y) for r in second.results] == [
        (8.0, 4.5)
    ]


def test_result_messages_survive_cdr() -> None:
    seg = _segmentation()
    rgb = _blocky_rgb()
    msgs = result_messages(seg, _header(3), "the mug", image=rgb)
    # segment(): one mono8 mask per object beside the union
    assert sorted(msgs.object_masks) == [0, 1]
    for i, msg in msgs.object_masks.items():
        assert msg.encoding == "mono8" and msg.header == _header(3)
        got = np.frombuffer(msg.data, np.uint8).reshape(H, W) == 255
        assert np.array_equal(got, seg.object_masks[i])
    assert not np.array_equal(seg.object_masks[0], seg.mask)  # each its own, not the union
    tracked = TrackedSegmentation(
        mask=seg.mask,
        objects=[
            ObjectPrompt((2, 1, 6, 4), ()),
            ObjectPrompt((7, 4, 9, 6), ()),
            ObjectPrompt(None, ()),
        ],
        reasoning="",
        answer_raw="",
        status=Status.OK,
        iou_predictions=[0.8, 0.7, 0.1],
        object_score_logits=[2.0, 1.0, -3.0],
        object_masks=np.stack([*seg.object_masks, np.zeros((H, W), bool)]),
        reasoned=False,
    )
    tmsgs = result_messages(tracked, _header(3), "the mug", image=rgb, reasoning=False)
    assert sorted(tmsgs.object_masks) == [0, 1] and tmsgs.reasoning is None  # lost one left out
    assert [d.id for d in tmsgs.detections.detections] == ["0", "1"]
    sent = [
        ("/seg/detections", msgs.detections),
        ("/seg/mask", msgs.mask),
        ("/seg/overlay", msgs.overlay),
        ("/seg/reasoning", msgs.reasoning),
        ("/seg/mask/object_0", tmsgs.object_masks[0]),
        ("/seg/mask/object_1", msgs.object_masks[1]),
        ("/seg/detections", tmsgs.detections),
    ]
    back = _roundtrip(sent)
    for (topic, msg), (got_topic, schema_name, raw) in zip(sent, back, strict=True):
        assert got_topic == topic and schema_name == msg.ROS_TYPE
        assert m.from_ros(type(msg), raw) == msg, topic
    mask = m.from_ros(m.Image, back[1][2])
    assert (mask.encoding, mask.step, mask.height, mask.width) == ("mono8", W, H, W)
    pixels = np.frombuffer(mask.data, np.uint8).reshape(H, W)
    assert np.array_equal(pixels == 255, seg.mask) and set(np.unique(pixels)) == {0, 255}
    overlay = m.from_ros(m.Image, back[2][2])
    assert (overlay.encoding, overlay.step) == ("rgb8", 3 * W)
    assert m.from_ros(m.String, back[3][2]).data == "the mug is left"
    obj0 = np.frombuffer(m.from_ros(m.Image, back[4][2]).data, np.uint8).reshape(H, W)
    assert np.array_equal(obj0 == 255, tracked.object_masks[0])


def test_mask_message_refuses_non_2d() -> None:
    with pytest.raises(ValueError, match="H x W"):
        mask_message(np.zeros((2, 2, 3), bool), _header())


def test_to_ros_fills_message_classes_by_type_name() -> None:
    """The node's conversion: every nested message becomes an instance of the class the
    resolver gives for its type name (rclpy's there; plain attribute classes here)."""
    made: list[str] = []

    def resolve(name: str) -> type:
        made.append(name)
        return type(name.replace("/", "_"), (), {})

    det = detections_message(_segmentation(), _header(), "q")
    out = m.to_ros(det, resolve)
    assert made[0] == "vision_msgs/msg/Detection2DArray"
    assert "vision_msgs/msg/Point2D" in made and "geometry_msgs/msg/Quaternion" in made
    assert out.detections[0].bbox.center.position.x == 3.5
    assert m.from_ros(m.Detection2DArray, out) == det
    img = m.to_ros(CASES["rgb8"][0], resolve)
    assert bytes(img.data) == CASES["rgb8"][0].data and img.data.typecode == "B"


def test_missing_field_is_named() -> None:
    with pytest.raises(ValueError, match="no field 'header'"):
        m.from_ros(m.CompressedImage, m.String(data="x"))


def test_bag_without_mcap_names_the_extra(tmp_path: Path) -> None:
    from segzero_edge.errors import MissingExtra, require

    with pytest.raises(MissingExtra, match=r"pip install 'segzero-edge\[ros\]'"):
        require("segzero_no_such_module", "ros", "reading rosbag2 MCAP files")


def test_bag_writer_copies_records_metadata_and_attachments() -> None:
    """What the bag command keeps of its input: every record byte for byte (times, sequence
    numbers, channel metadata such as rosbag2's QoS), metadata and attachment records."""
    from mcap.writer import Writer as McapWriter

    src = io.BytesIO()
    w = McapWriter(src)
    w.start(profile="ros2", library="test")
    sid = w.register_schema(
        "std_msgs/msg/String", "ros2msg", schema_text("std_msgs/String").encode()
    )
    qos = {"offered_qos_profiles": "- history: 3\n  depth: 0\n  reliability: 1\n"}
    cid = w.register_channel("/chatter", "cdr", sid, qos)
    payloads = [
        bytes([0, 1, 0, 0, 3, 0, 0, 0]) + b"hi\x00",
        b"\x00\x01\x00\x00\x01\x00\x00\x00\x00",
    ]
    for i, data in enumerate(payloads):
        w.add_message(cid, log_time=10 + i, data=data, publish_time=20 + i, sequence=7 + i)
    w.add_metadata("rosbag2", {"serialized_metadata": "version: 5"})
    w.add_attachment(1, 2, "calib.yaml", "text/yaml", b"k: 1\n")
    w.finish()
    src.seek(0)
    reader = bag.open_reader(src)
    dst = io.BytesIO()
    out = bag.BagWriter(dst)
    out.copy_extras(reader)
    for schema, channel, message in bag.iter_records(reader):
        out.copy(schema, channel, message)
    out.write("/segzero/reasoning", m.String(data="because"), 11)
    out.finish()
    dst.seek(0)
    back = bag.open_reader(dst)
    records = [
        (c.topic, dict(c.metadata), msg.log_time, msg.publish_time, msg.sequence, msg.data)
        for _, c, msg in bag.iter_records(back)
    ]
    chatter = [r for r in records if r[0] == "/chatter"]
    assert chatter == [
        ("/chatter", qos, 10, 20, 7, payloads[0]),
        ("/chatter", qos, 11, 21, 8, payloads[1]),
    ]
    ((topic, metadata, log_time, pub, _, data),) = [r for r in records if r[0] != "/chatter"]
    assert (topic, log_time, pub) == ("/segzero/reasoning", 11, 11)
    # a new topic offers a reliable (1), volatile (2) publisher, as ros2 bag record writes it
    assert metadata == {"offered_qos_profiles": bag.OUTPUT_QOS}
    profile = bag.OUTPUT_QOS.splitlines()
    assert profile[:4] == ["- history: 3", "  depth: 0", "  reliability: 1", "  durability: 2"]
    assert profile[-1] == "  avoid_ros_namespace_conventions: false" and len(profile) == 15
    decoded = DecoderFactory().decoder_for(
        "cdr",
        next(s for s in back.get_summary().schemas.values() if s.name == "std_msgs/msg/String"),
    )(data)
    assert decoded.data == "because"
    assert [(x.name, dict(x.metadata)) for x in back.iter_metadata()] == [
        ("rosbag2", {"serialized_metadata": "version: 5"})
    ]
    assert [(a.name, a.media_type, a.data) for a in back.iter_attachments()] == [
        ("calib.yaml", "text/yaml", b"k: 1\n")
    ]
    assert back.get_header().profile == "ros2"
