"""``sensor_msgs/Image`` and ``CompressedImage`` to a frame the pipeline takes, and back.

Encodings read (names of ``sensor_msgs/image_encodings.hpp``, plus the names drivers use):

- ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``: 8-bit samples, alpha dropped, mono
  repeated into R, G and B;
- ``mono16``, ``rgb16``, ``bgr16``: 16-bit samples in the byte order ``is_bigendian`` says,
  scaled to 8 bits as :func:`segzero_edge.image.to_8bit` does;
- ``yuv422`` / ``uyvy`` (U Y0 V Y1, ROS's ``yuv422``) and ``yuv422_yuy2`` / ``yuyv`` / ``yuy2``
  (Y0 U Y1 V): 4:2:2, BT.601 limited range, converted to RGB;
- ``nv12`` (Isaac ROS / Jetson camera drivers; ``height`` luma rows then ``height / 2`` rows of
  interleaved U V, all ``step`` bytes long) and ``nv21`` (V U): an
  :class:`~segzero_edge.image.NV12Frame` over the message's bytes, BT.601 limited range.

Rows may be padded: ``step`` is the row length in bytes (>= ``width`` x bytes per pixel), and
``data`` must hold every row. ``is_bigendian`` matters only for 16-bit encodings. Any other
encoding (Bayer, float depth, ``16UC1``, ...) is a ``ValueError`` naming it.

``CompressedImage``: ``format`` ``jpeg`` / ``png`` (or image_transport's ``"rgb8; jpeg
compressed bgr8"``), decoded by Pillow; ``compressedDepth`` and other codecs are refused.

Outputs: :func:`mask_message` (``mono8``, 255 inside, ``step == width``) and
:func:`rgb_message` (``rgb8``), both with the header given.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..image import MAX_PIXELS, NV12Frame, load_image, to_8bit
from ..pixels import nv12_to_rgb, yuv_to_rgb
from .messages import CompressedImage, Header, Image


@dataclass(frozen=True)
class _Packed:
    channels: int
    sample_bytes: int
    rgb: tuple[int, ...]  # channel index of R, G, B (mono: 0, 0, 0)


PACKED = {
    "rgb8": _Packed(3, 1, (0, 1, 2)),
    "bgr8": _Packed(3, 1, (2, 1, 0)),
    "rgba8": _Packed(4, 1, (0, 1, 2)),
    "bgra8": _Packed(4, 1, (2, 1, 0)),
    "mono8": _Packed(1, 1, (0, 0, 0)),
    "mono16": _Packed(1, 2, (0, 0, 0)),
    "rgb16": _Packed(3, 2, (0, 1, 2)),
    "bgr16": _Packed(3, 2, (2, 1, 0)),
}
"""Interleaved encodings: channels, bytes per sample, where R, G, B are."""

YUV422 = {"yuv422": "uyvy", "uyvy": "uyvy", "yuv422_yuy2": "yuyv", "yuyv": "yuyv", "yuy2": "yuyv"}
"""4:2:2 encoding names -> byte order (``uyvy``: U Y0 V Y1; ``yuyv``: Y0 U Y1 V)."""

SEMI_PLANAR = ("nv12", "nv21")

ENCODINGS = (*PACKED, *YUV422, *SEMI_PLANAR)
"""Every ``sensor_msgs/Image`` encoding :func:`image_to_frame` reads."""

COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


def _rows(msg: Image, rows: int, row_bytes: int) -> np.ndarray:
    """The ``rows`` x ``step`` bytes of ``msg.data``, cut to ``row_bytes`` per row (a view)."""
    enc = msg.encoding
    w, h, step = int(msg.width), int(msg.height), int(msg.step)
    if w <= 0 or h <= 0:
        raise ValueError(f"{enc} image has no pixels: {w} x {h}")
    if w * h > MAX_PIXELS:
        raise ValueError(f"{enc} image is too large: {w} x {h} pixels (limit {MAX_PIXELS})")
    if step < row_bytes:
        raise ValueError(
            f"{enc} image step {step} is shorter than a row ({w} pixels = {row_bytes} bytes)"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < rows * step:
        raise ValueError(
            f"{enc} image data holds {data.size} bytes; {w} x {h} with step {step} needs "
            f"{rows * step}"
        )
    return data[: rows * step].reshape(rows, step)[:, :row_bytes]


def _packed(msg: Image, spec: _Packed) -> np.ndarray:
    w, h = int(msg.width), int(msg.height)
    rows = _rows(msg, h, w * spec.channels * spec.sample_bytes)
    if spec.sample_bytes == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        samples = to_8bit(np.ascontiguousarray(rows).view(dtype).reshape(h, w, spec.channels))
    else:
        samples = rows.reshape(h, w, spec.channels)
    return np.ascontiguousarray(samples[..., list(spec.rgb)])


def _yuv422(msg: Image, order: str) -> np.ndarray:
    w, h = int(msg.width), int(msg.height)
    if w % 2:
        raise ValueError(f"{msg.encoding} (4:2:2) needs an even width, got {w}")
    quads = _rows(msg, h, w * 2).reshape(h, w // 2, 4)
    if order == "yuyv":
        y0, u, y1, v = (quads[..., i] for i in range(4))
    else:
        u, y0, v, y1 = (quads[..., i] for i in range(4))
    y = np.stack([y0, y1], axis=-1).reshape(h, w)
    return yuv_to_rgb(y, u.repeat(2, axis=1), v.repeat(2, axis=1))


def _semi_planar(msg: Image) -> NV12Frame:
    w, h = int(msg.width), int(msg.height)
    if w % 2 or h % 2:
        raise ValueError(f"{msg.encoding} needs an even width and height, got {w} x {h}")
    planes = _rows(msg, h + h // 2, w)
    y, uv = planes[:h], planes[h:]
    if msg.encoding == "nv21":  # V U -> U V (a copy; nv12 stays a view of the message)
        uv = np.ascontiguousarray(uv.reshape(h // 2, w // 2, 2)[..., ::-1].reshape(h // 2, w))
    return NV12Frame(y, uv)


def image_to_frame(msg: Image) -> np.ndarray | NV12Frame:
    """The pixels of a ``sensor_msgs/Image`` as the pipeline takes them.

    Returns an H x W x 3 uint8 RGB array, or for ``nv12`` / ``nv21`` an
    :class:`~segzero_edge.image.NV12Frame` (views of ``msg.data`` for ``nv12``; keep the
    message alive while the frame is used). Raises ``ValueError`` for an encoding not in
    :data:`ENCODINGS` (naming it), a non-positive or odd size where the encoding needs even,
    a ``step`` shorter than a row, or ``data`` shorter than ``height`` x ``step``.
    """
    enc = msg.encoding
    if enc in PACKED:
        return _packed(msg, PACKED[enc])
    if enc in YUV422:
        return _yuv422(msg, YUV422[enc])
    if enc in SEMI_PLANAR:
        return _semi_planar(msg)
    raise ValueError(
        f"unsupported sensor_msgs/Image encoding {enc!r}; supported: {', '.join(ENCODINGS)}"
    )


def image_to_rgb(msg: Image) -> np.ndarray:
    """:func:`image_to_frame` as an H x W x 3 uint8 RGB array (NV12 converted, BT.601)."""
    frame = image_to_frame(msg)
    return nv12_to_rgb(frame) if isinstance(frame, NV12Frame) else frame


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A ``jpeg`` or ``png`` ``sensor_msgs/CompressedImage`` -> H x W x 3 uint8 RGB.

    Raises ``ValueError`` for another ``format`` (naming it) or data Pillow cannot decode.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    fmt = msg.format.lower()
    codec = fmt.rsplit(";", 1)[-1].split()[0] if fmt.strip() else ""
    if "compresseddepth" in fmt.replace(" ", "") or codec not in COMPRESSED_FORMATS:
        raise ValueError(
            f"unsupported sensor_msgs/CompressedImage format {msg.format!r}; supported: "
            f"{', '.join(COMPRESSED_FORMATS)}"
        )
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as pic:
            pic.load()
            return load_image(pic)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode the {msg.format!r} CompressedImage: {e}") from None


def message_to_frame(msg: Image | CompressedImage) -> np.ndarray | NV12Frame:
    """:func:`image_to_frame` or :func:`compressed_to_rgb`, by the message's type."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_frame(msg)


def mask_message(mask: np.ndarray, header: Header) -> Image:
    """An H x W bool mask as a ``mono8`` Image (255 inside, 0 outside, ``step`` = W)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be H x W, got shape {m.shape}")
    h, w = m.shape
    data = (m.astype(bool).astype(np.uint8) * 255).tobytes()
    return Image(header=header, height=h, width=w, encoding="mono8", step=w, data=data)


def rgb_message(rgb: np.ndarray, header: Header) -> Image:
    """An H x W x 3 uint8 RGB array as an ``rgb8`` Image (``step`` = 3 W)."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"an rgb8 image must be H x W x 3 uint8, got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    data = np.ascontiguousarray(a).tobytes()
    return Image(header=header, height=h, width=w, encoding="rgb8", step=3 * w, data=data)
