"""Cameras and video files through OpenCV: a generated MJPG/AVI file read in order, the
newest-frame stream dropping stale frames, source kinds and their errors, ``track`` on a
video file with the tiny bundle, and the camera loop of docs/guide.md run on a video file."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="needs the [camera] extra (opencv-python-headless)")

from segzero_edge import camera  # noqa: E402
from segzero_edge.commands.track import input_frames  # noqa: E402
from segzero_edge.errors import CommandError  # noqa: E402

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[1]
N, H, W = 12, 48, 64


def _level(i: int) -> int:
    return 20 + 18 * i


def write_video(path: Path, n: int = N) -> list[np.ndarray]:
    """An MJPG AVI of ``n`` frames; frame i is flat grey ``_level(i)`` with a red square."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened(), "OpenCV here cannot write MJPG/AVI"
    frames = []
    for i in range(n):
        rgb = np.full((H, W, 3), _level(i), np.uint8)
        rgb[8:24, 8:24] = (230, 30, 30)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    writer.release()
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    write_video(path)
    return path


def test_read_frames_gives_every_frame_in_order_as_rgb(video: Path) -> None:
    frames = list(camera.read_frames(str(video)))
    assert len(frames) == N
    for i, f in enumerate(frames):
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        assert abs(int(np.median(f[30:, 30:, 1])) - _level(i)) <= 4, i  # the grey of frame i
        r, g, b = (int(v) for v in f[12:20, 12:20].reshape(-1, 3).mean(axis=0))
        assert r > 180 and g < 90 and b < 90  # red stays red: BGR was converted
    assert len(list(camera.read_frames(str(video), max_frames=5))) == 5


def test_stream_hands_out_the_newest_frame_and_drops_stale_ones(video: Path) -> None:
    got = []
    with camera.stream(str(video)) as frames:
        for f in frames:
            got.append(f)
            time.sleep(0.05)  # a model slower than the decoder
        dropped = frames.dropped
    indices = [f.index for f in got]
    assert indices == sorted(set(indices))  # never an older frame after a newer one
    assert indices[-1] == N - 1  # the last frame is handed out when the source ends
    assert dropped > 0 and len(got) + dropped == N  # missed frames are counted, not queued
    last = got[-1].image
    assert abs(int(np.median(last[30:, 30:, 1])) - _level(N - 1)) <= 4


def test_source_kinds_and_errors(tmp_path: Path) -> None:
    kinds = {
        0: "device",
        "2": "device",
        "/dev/video1": "device",
        "rtsp://10.0.0.2:8554/cam": "url",
        "nvarguscamerasrc ! nvvidconv ! appsink": "gstreamer",
        "clip.mp4": "file",
    }
    assert {s: camera.source_kind(s) for s in kinds} == kinds
    assert camera.is_live("/dev/video0") and not camera.is_live("clip.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        camera.open_capture(str(tmp_path / "missing.avi"))
    with pytest.raises(ValueError, match="cannot open the gstreamer source"):
        camera.open_capture("videotestsrc num-buffers=1 ! fakesink")  # no appsink
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot open the file source"):
        camera.open_capture(str(tmp_path / "junk.avi"))


def test_track_inputs_route_videos_to_opencv(video: Path, tmp_path: Path) -> None:
    n, frames = input_frames(str(video), max_frames=4)
    got = list(frames)
    assert n == 4 and len(got) == 4 and got[0].shape == (H, W, 3)
    n, frames = input_frames(str(video), max_frames=None)
    assert n == N
    with pytest.raises(CommandError, match="live device source: give --max-frames"):
        input_frames("/dev/video7", max_frames=None)
    with pytest.raises(CommandError, match="does not exist"):
        input_frames(str(tmp_path / "none.mp4"), max_frames=None)


def test_track_command_on_a_video_file(
    tiny_bundle: Path, video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video file is tracked as a stream (``num_frames=None``): its container's frame count
    may be an estimate, and a tracker given a clip length refuses the frames past it."""
    from segzero_edge.cli import main
    from segzero_edge.pipeline import SegZeroEdge

    clip_lengths: list[object] = []
    track = SegZeroEdge.track

    def observed_track(self: SegZeroEdge, *args: Any, **kwargs: Any) -> Any:
        clip_lengths.append(kwargs.get("num_frames"))
        return track(self, *args, **kwargs)

    monkeypatch.setattr(SegZeroEdge, "track", observed_track)
    out = tmp_path / "out"
    argv = ["track", str(video), "the red square", "--out", str(out), "--max-frames", "3"]
    assert main([*argv, "--bundle", str(tiny_bundle), "--max-new-tokens", "48", "--quiet"]) == 0
    assert clip_lengths == [None]
    report = json.loads((out / "track.json").read_text())
    assert report["frames"] == 3 and report["reasoned_frames"][0] == 0
    for r in report["per_frame"]:
        mask = cv2.imread(str(out / "masks" / r["file"]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (H, W) and int((mask > 0).sum()) == r["mask_area"]


def _guide_camera_loop() -> tuple[ast.Module, dict[str, str]]:
    """The camera loop of docs/guide.md (its python block that imports ``stream``) without its
    two settings, and those settings as the guide gives them."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "guide.md").read_text(), re.S)
    (code,) = [b for b in blocks if "from segzero_edge.camera import stream" in b]
    tree = ast.parse(code)
    settings = {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    tree.body = [n for n in tree.body if not isinstance(n, ast.Assign)]
    return tree, settings


def test_guide_camera_loop_runs_on_a_video_file(
    tiny_bundle: Path, video: Path, capsys: pytest.CaptureFixture
) -> None:
    """The loop runs as written, its ``bundle`` and ``source`` pointed at the tiny bundle and
    a generated video file: the first frame seeds the tracker, the newest frames follow."""
    tree, settings = _guide_camera_loop()
    assert set(settings) == {"bundle", "source"}
    assert camera.source_kind(settings["source"]) == "gstreamer"  # the Jetson CSI pipeline
    ns: dict = {"bundle": str(tiny_bundle), "source": str(video)}
    exec(compile(tree, "docs/guide.md", "exec"), ns)
    lines = capsys.readouterr().out.splitlines()
    assert ns["tracker"] is not None and ns["tracker"].last.mask.shape == (H, W)
    assert ns["f"].index == N - 1  # the last frame handed out is the newest one
    printed = [int(line.split()[0]) for line in lines]  # f.index of each tracked frame
    assert printed == sorted(set(printed)) and all(0 < i < N for i in printed)
    assert ns["frames"].dropped + 1 + len(printed) == N  # every frame handed out or dropped


def test_grab_frame_picks_one_frame_of_a_video(video: Path) -> None:
    for k in (0, 5, N - 1):
        got = camera.grab_frame(str(video), k)
        assert got.shape == (H, W, 3) and abs(int(np.median(got[30:, 30:, 1])) - _level(k)) <= 4
    with pytest.raises(ValueError, match=f"has {N} frame"):
        camera.grab_frame(str(video), N)
    with pytest.raises(ValueError, match=">= 0"):
        camera.grab_frame(str(video), -1)
    assert camera.is_video(str(video)) and camera.is_video("/dev/video0") and camera.is_video(0)
    assert not camera.is_video("kitchen.jpg")


def test_segment_command_on_a_video_frame(
    tiny_bundle: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image as PILImage

    from segzero_edge.cli import main
    from segzero_edge.commands.segment import input_image

    # before any model work: --frame only for videos and live sources, a missing video named
    png = tmp_path / "still.png"
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    for argv, message in [
        ([str(png), "q", "--frame", "2"], "--frame is for a video file or a live source"),
        ([str(video), "q", "--frame", "-1"], "--frame must be >= 0"),
        ([str(tmp_path / "none.mp4"), "q"], "does not exist"),
    ]:
        assert main(["segment", *argv, "--bundle", str(tmp_path / "no-bundle")]) == 2
        assert message in capsys.readouterr().err
    frame = input_image(str(video), 4)
    assert abs(int(np.median(frame[30:, 30:, 1])) - _level(4)) <= 4  # frame 4, as RGB
    mask, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    argv = ["segment", str(video), "the red square", "--frame", "4", "--json"]
    argv += ["--out", str(mask), "--overlay", str(overlay), "--bundle", str(tiny_bundle)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [report["height"], report["width"]] == [H, W]
    with PILImage.open(mask) as m, PILImage.open(overlay) as o:
        assert m.size == o.size == (W, H)
        assert int((np.asarray(m) > 0).sum()) == report["mask_area"]
