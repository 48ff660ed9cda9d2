"""``segzero-edge bag`` on generated rosbag2 MCAP files with the tiny bundle: output topics,
message counts, stamps and mask sizes, input records copied unchanged, tracking, a failing
frame skipped, and the command's refusals (before any model work)."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mcap_ros2", reason="needs the [ros] extra (mcap, mcap-ros2-support)")

from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer as Ros2Writer
from PIL import Image as PILImage

from segzero_edge.cli import main
from segzero_edge.pixels import rgb_to_nv12
from segzero_edge.ros import bag
from segzero_edge.ros import messages as m
from segzero_edge.ros.definitions import schema_text

pytestmark = pytest.mark.runtime

H, W = 48, 64
T0 = 1_700_000_000_000_000_000  # ns
PERIOD = 100_000_000  # 10 Hz


def _frame(i: int) -> np.ndarray:
    rgb = np.full((H, W, 3), 40, np.uint8)
    x = 4 + 2 * i
    rgb[16:32, x : x + 16] = (220, 30, 30)
    return rgb


def _raw(i: int, encoding: str = "rgb8") -> m.Image:
    rows = _frame(i).reshape(H, W * 3)
    padded = np.concatenate([rows, np.full((H, 5), 0xAB, np.uint8)], axis=1)
    stamp = m.Time.from_ns(T0 + i * PERIOD - 7_000_000)  # acquisition before logging
    return m.Image(
        header=m.Header(stamp=stamp, frame_id="camera_optical_frame"),
        height=H,
        width=W,
        encoding=encoding,
        step=W * 3 + 5,
        data=padded.tobytes(),
    )


def _nv12(i: int) -> m.Image:
    """Frame ``i`` as a Jetson driver publishes it: ``nv12``, rows padded to 80 bytes."""
    planes = rgb_to_nv12(_frame(i))
    padded = np.concatenate([planes, np.zeros((planes.shape[0], 16), np.uint8)], axis=1)
    return m.Image(
        header=_raw(i).header,
        height=H,
        width=W,
        encoding="nv12",
        step=W + 16,
        data=padded.tobytes(),
    )


def _jpeg(i: int) -> m.CompressedImage:
    buf = io.BytesIO()
    PILImage.fromarray(_frame(i)).save(buf, format="JPEG", quality=90)
    stamp = m.Time.from_ns(T0 + i * PERIOD)
    return m.CompressedImage(
        header=m.Header(stamp=stamp, frame_id="cam"), format="jpeg", data=buf.getvalue()
    )


def write_bag(
    path: Path, images: list[Any], topic: str = "/camera/image_raw", chunk_size: int = 1 << 20
) -> None:
    """A rosbag2-style MCAP (mcap-ros2-support's writer, chunk CRCs on): the images, and a
    String on /chatter between every two of them; ``chunk_size`` 1 puts each record in its
    own chunk."""
    with open(path, "wb") as f:
        w = Ros2Writer(f, chunk_size=chunk_size)
        s_img = w.register_msgdef(images[0].ROS_TYPE, schema_text(images[0].ROS_TYPE))
        s_str = w.register_msgdef("std_msgs/msg/String", schema_text("std_msgs/msg/String"))
        for i, img in enumerate(images):
            t = T0 + i * PERIOD
            w.write_message(topic, s_img, img, log_time=t, publish_time=t + 1, sequence=i)
            w.write_message("/chatter", s_str, {"data": f"hello {i}"}, log_time=t + PERIOD // 2)
        w.finish()


def read_bag(path: Path) -> list[tuple[str, str, int, int, bytes, Any]]:
    """``(topic, schema name, log time, publish time, raw bytes, decoded)`` of every record."""
    factory = DecoderFactory()
    out = []
    with open(path, "rb") as f:
        reader = bag.open_reader(f)
        for schema, channel, msg in bag.iter_records(reader):
            decoded = factory.decoder_for(channel.message_encoding, schema)(msg.data)
            out.append(
                (channel.topic, schema.name, msg.log_time, msg.publish_time, msg.data, decoded)
            )
    return out


def _run(argv: list[str], bundle: Path) -> int:
    return main([*argv, "--bundle", str(bundle), "--max-new-tokens", "48", "--quiet"])


def test_bag_segments_every_frame(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, dst = tmp_path / "in.mcap", tmp_path / "out" / "seg.mcap"
    write_bag(src, [_raw(i) for i in range(20)])
    before = src.read_bytes()
    argv = ["bag", str(src), "--image-topic", "/camera/image_raw", "--query", "the red box"]
    assert _run([*argv, "-o", str(dst)], tiny_bundle) == 0
    assert src.read_bytes() == before
    assert "20 of 20 frames" in capsys.readouterr().err
    records = read_bag(dst)
    counts = Counter(r[0] for r in records)
    per_object = {t for t in counts if t.startswith("/segzero/mask/object_")}
    assert set(counts) - per_object == {
        "/camera/image_raw",
        "/chatter",
        "/segzero/detections",
        "/segzero/mask",
        "/segzero/overlay",
        "/segzero/reasoning",
    }
    for topic in ("/camera/image_raw", "/chatter", "/segzero/detections", "/segzero/mask"):
        assert counts[topic] == 20, topic
    assert counts["/segzero/overlay"] == counts["/segzero/reasoning"] == 20
    types = {r[0]: r[1] for r in records}
    assert types["/segzero/detections"] == "vision_msgs/msg/Detection2DArray"
    assert types["/segzero/mask"] == types["/segzero/overlay"] == "sensor_msgs/msg/Image"
    assert types["/segzero/reasoning"] == "std_msgs/msg/String"
    # the input records are copied byte for byte, times included
    original = [r[:5] for r in read_bag(src)]
    assert [r[:5] for r in records if r[0] in ("/camera/image_raw", "/chatter")] == original
    # every output carries its image's header and log / publish time
    images = {
        r[2]: (r[3], m.from_ros(m.Image, r[5]).header)
        for r in records
        if r[0] == "/camera/image_raw"
    }
    for topic, _, log_time, pub, _, decoded in records:
        if not topic.startswith("/segzero/") or topic.endswith("reasoning"):
            continue
        image_pub, header = images[log_time]
        assert pub == image_pub
        assert m.from_ros(m.Header, decoded.header) == header, topic
        if topic.startswith("/segzero/mask"):
            mask = m.from_ros(m.Image, decoded)
            assert (mask.encoding, mask.height, mask.width, mask.step) == ("mono8", H, W, W)
            assert len(mask.data) == H * W and set(mask.data) <= {0, 255}
        if topic == "/segzero/overlay":
            assert (decoded.encoding, decoded.height, decoded.width) == ("rgb8", H, W)
        if topic == "/segzero/detections":
            for d in decoded.detections:
                assert m.from_ros(m.Header, d.header) == header and d.id.isdigit()
    assert sorted(images) == [T0 + i * PERIOD for i in range(20)]
    assert [p.name for p in dst.parent.iterdir()] == ["seg.mcap"]  # nothing left beside it


def test_bag_tracks_compressed_frames(tiny_bundle: Path, tmp_path: Path) -> None:
    """--track over a generated 20-frame CompressedImage (jpeg) bag, the first ``k`` frames
    (--max-frames: SAM2's memory on the CPU is slow): the reasoner runs on the first frame
    only, each tracked frame gets its detections and masks with its own header, and every
    input record is kept."""
    n, k = 20, 5
    src, dst = tmp_path / "in.mcap", tmp_path / "track.mcap"
    write_bag(src, [_jpeg(i) for i in range(n)], topic="/cam/image/compressed")
    before = src.read_bytes()
    argv = ["bag", str(src), "--image-topic", "/cam/image/compressed", "--query", "the box"]
    argv += ["--track", "--namespace", "/robot/seg", "--no-overlay", "--max-frames", str(k)]
    assert _run([*argv, "-o", str(dst)], tiny_bundle) == 0
    assert src.read_bytes() == before
    records = read_bag(dst)
    counts = Counter(r[0] for r in records)
    assert counts["/cam/image/compressed"] == counts["/chatter"] == n
    assert counts["/robot/seg/detections"] == counts["/robot/seg/mask"] == k
    assert counts["/robot/seg/reasoning"] == 1  # the reasoner ran on the first frame only
    assert "/robot/seg/overlay" not in counts and not any(t.startswith("/segzero") for t in counts)
    # tracked frames keep each object's mask: object_<i> topics, at most one message a frame
    per_object = {t: c for t, c in counts.items() if t.startswith("/robot/seg/mask/object_")}
    assert per_object and all(0 < c <= k for c in per_object.values())
    expected = {T0 + i * PERIOD: i for i in range(n)}  # log time -> frame
    for topic, _, log_time, _, _, decoded in records:
        if not topic.startswith("/robot/seg/") or topic.endswith("reasoning"):
            continue
        header = m.from_ros(m.Header, decoded.header)
        assert header == _jpeg(expected[log_time]).header, topic  # stamp and frame_id
        if topic.startswith("/robot/seg/mask"):
            mask = m.from_ros(m.Image, decoded)
            assert (mask.encoding, mask.height, mask.width, mask.step) == ("mono8", H, W, W)
            assert len(mask.data) == H * W and set(mask.data) <= {0, 255}
    stamps = [
        m.from_ros(m.Header, r[5].header).stamp.to_ns()
        for r in records
        if r[0] == "/robot/seg/mask"
    ]
    assert stamps == [T0 + i * PERIOD for i in range(k)]
    (reasoning,) = [r for r in records if r[0] == "/robot/seg/reasoning"]
    assert reasoning[2] == T0  # logged with the first frame


def test_bag_skips_a_failing_frame_and_keeps_the_rest(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, dst = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(src, [_raw(0), _raw(1, encoding="bayer_rggb8"), _nv12(2)])
    argv = ["bag", str(src), "--image-topic", "/camera/image_raw", "-o", str(dst)]
    argv += ["--query", "the red box", "--query", "the background"]
    assert _run(argv, tiny_bundle) == 1
    err = capsys.readouterr().err
    assert "frame 1" in err and "bayer_rggb8" in err and "2 of 3 frames" in err
    counts = Counter(r[0] for r in read_bag(dst))
    assert counts["/camera/image_raw"] == 3  # the failed frame's input is still there
    for k in (1, 2):
        assert counts[f"/segzero/query_{k}/detections"] == 2
        assert counts[f"/segzero/query_{k}/mask"] == 2


def test_bag_damaged_input_leaves_no_output(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A damaged chunk (bytes flipped) after two frames were segmented: one error line naming the
    damage, no output file (not even a partial or temporary one), the input untouched."""
    src, out_dir = tmp_path / "in.mcap", tmp_path / "out"
    write_bag(src, [_raw(i) for i in range(4)], chunk_size=1)
    with open(src, "rb") as f:
        chunks = bag.open_reader(f).get_summary().chunk_indexes
    third = next(c for c in chunks if c.message_start_time == T0 + 2 * PERIOD)
    data = bytearray(src.read_bytes())
    middle = third.chunk_start_offset + third.chunk_length // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    src.write_bytes(bytes(data))
    argv = ["bag", str(src), "--image-topic", "/camera/image_raw", "--query", "the red box"]
    assert _run([*argv, "-o", str(out_dir / "seg.mcap")], tiny_bundle) == 2
    err = capsys.readouterr().err.strip()
    assert "damaged MCAP file" in err and "after 4 good ones" in err and "\n" not in err, err
    assert list(out_dir.iterdir()) == []  # the folder was made; nothing is left in it
    assert src.read_bytes() == bytes(data)


def test_bag_refusals_leave_everything_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "in.mcap"
    write_bag(src, [_raw(0)])
    before = src.read_bytes()
    base = ["bag", str(src), "--query", "q"]
    cases = [
        ([*base, "--image-topic", "/camera/image_raw", "-o", str(src)], "is the input file"),
        ([*base, "--image-topic", "/nope", "-o", str(tmp_path / "o.mcap")], "/camera/image_raw"),
        (
            [*base, "--image-topic", "/chatter", "-o", str(tmp_path / "o.mcap")],
            "std_msgs/msg/String",
        ),
        (
            [
                *base,
                "--image-topic",
                "/camera/image_raw",
                "--namespace",
                "seg",
                "-o",
                str(tmp_path / "o.mcap"),
            ],
            "not an absolute ROS name",
        ),
        (
            [
                *base,
                "--image-topic",
                "/camera/image_raw",
                "--rereason-after",
                "3",
                "-o",
                str(tmp_path / "o.mcap"),
            ],
            "needs --track",
        ),
        (
            [
                "bag",
                str(tmp_path / "none.mcap"),
                "--query",
                "q",
                "--image-topic",
                "/c",
                "-o",
                str(tmp_path / "o.mcap"),
            ],
            "does not exist",
        ),
    ]
    (tmp_path / "notmcap.mcap").write_bytes(b"hello")
    cases.append(
        (
            [
                "bag",
                str(tmp_path / "notmcap.mcap"),
                "--query",
                "q",
                "--image-topic",
                "/c",
                "-o",
                str(tmp_path / "o.mcap"),
            ],
            "not an MCAP file",
        )
    )
    existing = tmp_path / "exists.mcap"
    existing.write_bytes(b"keep me")
    cases.append(([*base, "--image-topic", "/camera/image_raw", "-o", str(existing)], "--force"))
    # another name of the input (a symlink, a hard link) is the input: refused even with --force
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "sym.mcap").symlink_to(src)
    os.link(src, tmp_path / "links" / "hard.mcap")
    for link in ("sym.mcap", "hard.mcap"):
        out = ["-o", str(tmp_path / "links" / link), "--force"]
        cases.append(([*base, "--image-topic", "/camera/image_raw", *out], "is the input file"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert src.read_bytes() == before and existing.read_bytes() == b"keep me"
    names = ["exists.mcap", "in.mcap", "links", "notmcap.mcap"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["hard.mcap", "sym.mcap"]
