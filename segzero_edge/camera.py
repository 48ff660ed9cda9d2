"""Cameras and video files through OpenCV's ``cv2.VideoCapture`` (the ``[camera]`` extra).

A source is one of:

- a device: an index (``0``, ``"0"``) or a V4L2 node (``/dev/video0``), opened with V4L2;
- a GStreamer pipeline string (it contains ``!``), e.g. Jetson's CSI camera
  ``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv !
  video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1``; this needs
  an OpenCV built with GStreamer (JetPack's ``python3-opencv``; the PyPI wheels have none);
- a stream URL (``rtsp://``, ``rtsps://``, ``http(s)://``), opened with FFmpeg;
- a video file (MP4, AVI, MKV, ...).

:func:`stream` hands out the newest frame only: a capture thread reads continuously into a
:class:`~segzero_edge.ros.latest.LatestSlot`, so a model slower than the camera never works on
stale frames (the frames it missed are counted, not queued). :func:`read_frames` reads every
frame in order, for files. Frames are H x W x 3 uint8 RGB (OpenCV's BGR converted).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import require
from .ros.latest import LatestSlot

EXTRA = "camera"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".h264"}
"""File name endings read as video files (through OpenCV) rather than as images."""
_URL = re.compile(r"^(rtsps?|https?|rtmp|udp|tcp)://", re.IGNORECASE)
_DEVICE = re.compile(r"^(\d+|/dev/video\d+)$")


def _cv2() -> Any:
    return require("cv2", EXTRA, "reading cameras and video files")


def source_kind(source: str | int) -> str:
    """``"device"``, ``"gstreamer"``, ``"url"`` or ``"file"`` (see the module docstring)."""
    text = str(source).strip()
    if isinstance(source, int) or _DEVICE.match(text):
        return "device"
    if "!" in text:
        return "gstreamer"
    if _URL.match(text):
        return "url"
    return "file"


def is_live(source: str | int) -> bool:
    """True for a camera, a pipeline or a stream URL: sources with no last frame."""
    return source_kind(source) != "file"


def is_video(source: str | int) -> bool:
    """True for what OpenCV reads rather than Pillow: a live source or a file whose name ends
    in one of :data:`VIDEO_SUFFIXES`."""
    return is_live(source) or Path(str(source).strip()).suffix.lower() in VIDEO_SUFFIXES


def open_capture(source: str | int) -> Any:
    """An opened ``cv2.VideoCapture`` of ``source``.

    Raises :class:`~segzero_edge.errors.MissingExtra` without OpenCV, ``FileNotFoundError``
    for a file that does not exist, ``ValueError`` when OpenCV cannot open the source (for a
    pipeline, saying whether this OpenCV was built with GStreamer).
    """
    cv2 = _cv2()
    kind = source_kind(source)
    text = str(source).strip()
    if kind == "device":
        cap = cv2.VideoCapture(int(text) if text.isdigit() else text, cv2.CAP_V4L2)
    elif kind == "gstreamer":
        cap = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
    elif kind == "url":
        cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
    else:
        if not Path(text).is_file():
            raise FileNotFoundError(f"video file {text} does not exist")
        cap = cv2.VideoCapture(text)
    if not cap.isOpened():
        cap.release()
        hint = ""
        if kind == "gstreamer":
            info = cv2.getBuildInformation()
            built = re.search(r"GStreamer:\s*YES", info) is not None
            hint = (
                "; the pipeline must end in appsink"
                if built
                else "; this OpenCV was built without GStreamer (use JetPack's python3-opencv)"
            )
        raise ValueError(f"OpenCV cannot open the {kind} source {text!r}{hint}")
    return cap


def frame_count(cap: Any) -> int | None:
    """The container's frame count (``CAP_PROP_FRAME_COUNT``), ``None`` when it has none."""
    n = int(cap.get(_cv2().CAP_PROP_FRAME_COUNT) or 0)
    return n if n > 0 else None


def _rgb(cv2: Any, bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return np.ascontiguousarray(np.repeat(bgr[..., None], 3, axis=2))
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


def read_frames(
    source: str | int, max_frames: int | None = None
) -> Generator[np.ndarray, None, None]:
    """Every frame of ``source`` in order (H x W x 3 uint8 RGB), up to ``max_frames``."""
    cv2 = _cv2()
    cap = open_capture(source)
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                return
            n += 1
            yield _rgb(cv2, bgr)
    finally:
        cap.release()


def grab_frame(source: str | int, index: int = 0) -> np.ndarray:
    """One frame of ``source`` (H x W x 3 uint8 RGB): frame ``index`` (from 0) of a video
    file; of a live source, the newest frame once ``index`` frames were read (so a camera's
    exposure can settle first).

    Raises ``ValueError`` for a negative ``index`` or a source that ends before that frame,
    and what :func:`open_capture` raises.
    """
    if isinstance(index, bool) or index < 0:
        raise ValueError(f"the frame number must be >= 0, got {index!r}")
    if not is_live(source):
        count = 0
        with contextlib.closing(read_frames(source, index + 1)) as frames:
            for image in frames:
                if count == index:
                    return image
                count += 1
        raise ValueError(f"{source} has {count} frame(s): there is no frame {index}")
    with stream(source) as live:
        for f in live:
            if f.index >= index:
                return f.image
    raise ValueError(f"the {source_kind(source)} source {source!r} ended before frame {index}")


@dataclass(frozen=True)
class CapturedFrame:
    """A frame from :func:`stream`: ``image`` (H x W x 3 uint8 RGB), ``index`` (the frame's
    number in the capture, from 0: a gap means frames were dropped), ``time`` (seconds,
    ``time.monotonic()`` when it was read)."""

    image: np.ndarray
    index: int
    time: float


class FrameStream:
    """Iterator of the newest :class:`CapturedFrame` of a capture read by a thread.

    Ends when the source ends (or fails to give a frame) or after :meth:`close`; use it as a
    context manager (or close it) to stop the thread and release the capture.
    """

    def __init__(self, source: str | int) -> None:
        self._cv2 = _cv2()
        self._cap = open_capture(source)
        self._slot: LatestSlot[CapturedFrame] = LatestSlot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="segzero-capture", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                ok, bgr = self._cap.read()
                if not ok:
                    break
                self._slot.put(CapturedFrame(_rgb(self._cv2, bgr), index, time.monotonic()))
                index += 1
        finally:
            self._slot.close()

    @property
    def dropped(self) -> int:
        """Frames read but replaced by a newer one before they were taken."""
        return self._slot.dropped

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> CapturedFrame:
        frame = self._slot.get()
        if frame is None:
            self.close()
            raise StopIteration
        return frame

    def close(self) -> None:
        """Stop the capture thread and release the device or file."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._cap.release()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(source: str | int) -> FrameStream:
    """The newest frames of ``source`` (see :class:`FrameStream`); stale frames are dropped.

    Raises what :func:`open_capture` raises.
    """
    return FrameStream(source)
