"""Turn what a caller passes as an image into an H x W x 3 uint8 RGB array.

One rule for every way in: EXIF orientation is applied (the image as a viewer shows it), for a
file path and for a PIL image alike (:func:`PIL.ImageOps.exif_transpose`, which also drops the
tag, so an image already transposed is not turned twice); a numpy array carries no EXIF and
is taken as is. Images with more than 8 bits per sample (PIL modes ``I;16*``, ``I``, ``F``,
e.g. a 16-bit greyscale PNG) are scaled to 8 bits, ``round(v * 255 / 65535)`` after clipping to
0..65535 (65535 -> 255, 8224 -> 32). The pixel limit is checked from the file header, before
anything is decoded.

An :class:`NV12Frame` (camera / decoder buffers, luma and chroma planes apart) is the
other way in; the pipeline reads it without converting it to an RGB array first.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ImageLike = Any
"""A path (str or os.PathLike), a PIL.Image.Image or an H x W x 3 uint8 array."""

MAX_PIXELS = 64_000_000
"""Refuse images above this many pixels (8000 x 8000): a caller mistake, not a photo."""

WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
"""PIL modes of one channel with more than 8 bits, scaled from 0..65535 to 0..255."""
EIGHT_BIT_MODES = ("L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "1")
"""Other PIL modes taken (converted to RGB by Pillow)."""


def _check_size(w: int, h: int, what: str) -> None:
    if w * h > MAX_PIXELS:
        raise ValueError(f"{what} is too large: {w} x {h} pixels (limit {MAX_PIXELS})")


def _check_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what} must be H x W x 3 (RGB), got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must have dtype uint8, got {arr.dtype}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"{what} is empty: shape {tuple(arr.shape)}")
    _check_size(w, h, what)
    return np.ascontiguousarray(arr)


def to_8bit(values: np.ndarray) -> np.ndarray:
    """16-bit samples (any integer or float dtype) -> uint8: clip to 0..65535, then
    ``round(v * 255 / 65535)`` (the inverse of 8 -> 16 bit replication, ``v * 257``)."""
    v = np.clip(np.nan_to_num(values.astype(np.float64), nan=0.0), 0, 65535)
    return np.rint(v / 257.0).astype(np.uint8)


def _from_pil(img: Any, what: str) -> np.ndarray:
    from PIL import ImageOps

    _check_size(img.width, img.height, what)
    img = ImageOps.exif_transpose(img)
    if img.mode in WIDE_MODES:
        grey = to_8bit(np.asarray(img))
        return _check_array(np.repeat(grey[:, :, None], 3, axis=2), what)
    if img.mode != "RGB":
        if img.mode not in EIGHT_BIT_MODES:
            raise ValueError(f"{what} has an unsupported PIL mode {img.mode!r}")
        img = img.convert("RGB")
    return _check_array(np.asarray(img), what)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`load_image` returns it (EXIF orientation
    applied), read from the header without decoding the pixels.

    Raises ``FileNotFoundError`` or ``ValueError`` (unreadable, or above ``MAX_PIXELS``).
    """
    with _open(Path(path)) as img:
        w, h = img.size
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF Orientation: turned 90 degrees
            w, h = h, w
        return w, h


def _open(path: Path) -> Any:
    """``PIL.Image.open`` with the size checked from the header; errors as ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is lower
            img = Image.open(path)
    except Image.DecompressionBombError as e:  # above twice Pillow's own limit
        raise ValueError(f"image {path} is too large ({e}; limit {MAX_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    try:
        _check_size(img.width, img.height, f"image {path}")
    except ValueError:
        img.close()
        raise
    return img


def load_image(image: ImageLike) -> np.ndarray:
    """Return ``image`` as a C-contiguous H x W x 3 uint8 RGB array (see the module rules).

    Accepts a file path, a PIL image or an H x W x 3 uint8 array (RGB). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` for anything else wrong: an
    unreadable file, an unsupported PIL mode or array shape/dtype, or more than
    ``MAX_PIXELS`` pixels (checked from the file header, before decoding).
    """
    if isinstance(image, np.ndarray):
        return _check_array(image, "image array")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        with _open(path) as img:
            try:
                return _from_pil(img, f"image {path}")
            except OSError as e:  # truncated or corrupt pixel data
                raise ValueError(f"cannot read image {path}: {e}") from None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        return _from_pil(image, "PIL image")
    raise ValueError(
        "image must be a file path, a PIL.Image.Image or an H x W x 3 uint8 numpy array, "
        f"got {type(image).__name__}"
    )


def frame_key(image: np.ndarray | NV12Frame) -> str:
    """A content key of an image array: blake2b-128 over its shape and bytes (hex, 32 chars).

    Two arrays get the same key exactly when they hold the same pixels (up to hash collisions),
    whatever object they are; the per-frame caches (SAM2 embedding, reasoner prefix) use it.
    A host :class:`NV12Frame` is keyed by its range and its two planes' visible bytes; one in
    device memory gets ``""`` (not cached: reading it back would cost what the cache saves).
    """
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    if isinstance(image, NV12Frame):
        if image.on_device:
            return ""
        h.update(f"{image.fmt} {image.hw}".encode())
        for plane in (image.y, image.uv):
            h.update(np.ascontiguousarray(plane).data)
        return h.hexdigest()
    h.update(repr(tuple(image.shape)).encode())
    h.update(repr(image.dtype.str).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


@dataclass(frozen=True)
class NV12Frame:
    """A camera or decoder frame in NV12: the luma plane and the interleaved chroma plane.

    The two planes are separate buffers with their own row pitch, as Jetson's ``NvBufSurface``
    (camera, decoder) and V4L2 multi-planar buffers hold them; the UV plane is never assumed
    to follow the luma rows.

    Host memory: ``y`` is an H x W uint8 array and ``uv`` an (H / 2) x W uint8 array (U, V
    interleaved per 2 x 2 block); either may be a view of a wider, pitched buffer
    (``buf[:, :W]``): the pitches are read from the arrays' strides.

    Device memory: ``y`` and ``uv`` are CUDA device pointers (ints, e.g. from
    ``NvBufSurfaceMapEglImage`` / ``cuGraphicsResourceGetMappedEglFrame``) and ``width``,
    ``height``, ``y_pitch`` and ``uv_pitch`` (bytes) are required; such frames need the
    pipeline's CUDA path (a TensorRT segmenter and the native library built with CUDA). They
    must be pitch-linear: Jetson camera and decoder surfaces are block-linear by default
    (tiled, no pitch pointer); convert them with ``NvBufSurfTransform`` to an
    ``NVBUF_LAYOUT_PITCH`` surface first (see :mod:`segzero_edge.cuda_pixels`).

    Colour: ITU-R BT.601-7 (Kr = 0.299, Kb = 0.114). ``full_range=False`` is limited (video)
    range, Y 16..235 and Cb/Cr 16..240 (BT.601-7 section 2.5.3), which is what
    ``NVBUF_COLOR_FORMAT_NV12`` denotes (``nvbufsurface.h``); ``full_range=True`` is 0..255
    (``NVBUF_COLOR_FORMAT_NV12_ER``). H and W must be even.
    """

    y: np.ndarray | int
    uv: np.ndarray | int
    width: int | None = None
    height: int | None = None
    y_pitch: int | None = None
    uv_pitch: int | None = None
    full_range: bool = False

    def __post_init__(self) -> None:
        host = [isinstance(p, np.ndarray) for p in (self.y, self.uv)]
        if all(host):
            self._check_host()
        elif any(host) or not all(isinstance(p, int) for p in (self.y, self.uv)):
            raise ValueError("NV12Frame planes must both be numpy arrays or both device pointers")
        else:
            self._check_device()

    def _check_host(self) -> None:
        y, uv = self.y, self.uv
        assert isinstance(y, np.ndarray) and isinstance(uv, np.ndarray)
        for name, a in (("y", y), ("uv", uv)):
            if a.dtype != np.uint8 or a.ndim != 2 or a.strides[1] != 1:
                raise ValueError(
                    f"NV12 {name} plane must be a 2-D uint8 array with contiguous rows, got "
                    f"{a.dtype} {a.shape} strides {a.strides}"
                )
        h, w = y.shape
        if h == 0 or w == 0 or h % 2 or w % 2:
            raise ValueError(f"NV12 needs a non-empty, even width and height, got {w} x {h}")
        if h * w > MAX_PIXELS:
            raise ValueError(f"NV12 frame is too large: {w} x {h} pixels (limit {MAX_PIXELS})")
        if uv.shape != (h // 2, w):
            raise ValueError(
                f"NV12 uv plane must be (H / 2) x W = {(h // 2, w)} for a {w} x {h} luma "
                f"plane, got {uv.shape}"
            )
        for name, given, actual in (("y", self.y_pitch, y), ("uv", self.uv_pitch, uv)):
            if given is not None and given != actual.strides[0]:
                raise ValueError(
                    f"{name}_pitch {given} differs from the {name} array's row stride "
                    f"{actual.strides[0]}"
                )
        if (self.width, self.height) not in ((None, None), (w, h)):
            raise ValueError(f"width/height {self.width} x {self.height} differ from {w} x {h}")

    def _check_device(self) -> None:
        for name, ptr in (("y", self.y), ("uv", self.uv)):
            if isinstance(ptr, bool) or not isinstance(ptr, int) or not 0 < ptr < 2**64:
                raise ValueError(
                    f"NV12 device pointer {name} must be a positive int (a CUDA device "
                    f"address), got {ptr!r}"
                )
        need = {"width": self.width, "height": self.height}
        need |= {"y_pitch": self.y_pitch, "uv_pitch": self.uv_pitch}
        missing = [k for k, v in need.items() if v is None]
        if missing:
            raise ValueError(f"a device-memory NV12Frame needs {', '.join(missing)}")
        for name, value in need.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"NV12 {name} must be an int, got {value!r}")
        w, h = int(self.width or 0), int(self.height or 0)
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise ValueError(f"NV12 needs a positive, even width and height, got {w} x {h}")
        if int(self.y_pitch or 0) < w or int(self.uv_pitch or 0) < w:
            raise ValueError(
                f"NV12 pitches (y {self.y_pitch}, uv {self.uv_pitch}) must be >= the width {w}"
            )

    @classmethod
    def from_packed(cls, frame: np.ndarray, full_range: bool = False) -> NV12Frame:
        """Views of a packed ``(H * 3 / 2) x W`` NV12 array (luma rows, then chroma rows)."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 2:
            raise ValueError("a packed NV12 frame must be a 2-D uint8 array")
        if frame.shape[0] % 3:
            raise ValueError(f"a packed NV12 frame has H * 3 / 2 rows, got {frame.shape}")
        h = frame.shape[0] * 2 // 3
        return cls(frame[:h], frame[h:], full_range=full_range)

    @property
    def on_device(self) -> bool:
        """True when the planes are CUDA device pointers."""
        return not isinstance(self.y, np.ndarray)

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        if isinstance(self.y, np.ndarray):
            return int(self.y.shape[0]), int(self.y.shape[1])
        return int(self.height or 0), int(self.width or 0)

    @property
    def fmt(self) -> str:
        """The native library's format name: ``nv12`` (limited range) or ``nv12_full``."""
        return "nv12_full" if self.full_range else "nv12"


Frame = np.ndarray | NV12Frame
"""What the pipeline's pixel code reads: H x W x 3 uint8 RGB, or an :class:`NV12Frame`."""


def load_frame(image: ImageLike | NV12Frame) -> Frame:
    """An :class:`NV12Frame` as is; anything else through :func:`load_image`."""
    if isinstance(image, NV12Frame):
        return image
    return load_image(image)
