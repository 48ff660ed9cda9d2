"""Turn what a caller passes as an image into an H x W x 3 uint8 RGB array.

One rule for every way in: EXIF orientation is applied (the image as a viewer shows it), for a
file path and for a PIL image alike (:func:`PIL.ImageOps.exif_transpose`, which also drops the
tag, so an image already transposed is not turned twice); a numpy array carries no EXIF and
is taken as is. Images with more than 8 bits per sample (PIL modes ``I;16*``, ``I``, ``F``,
e.g. a 16-bit greyscale PNG) are scaled to 8 bits, ``round(v * 255 / 65535)`` after clipping to
0..65535 (65535 -> 255, 8224 -> 32). The pixel limit is checked from the file header, before
anything is decoded.
"""

from __future__ import annotations

import os
import warnings
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


def frame_key(image: np.ndarray) -> str:
    """A content key of an image array: blake2b-128 over its shape and bytes (hex, 32 chars).

    Two arrays get the same key exactly when they hold the same pixels (up to hash collisions),
    whatever object they are; the per-frame caches (SAM2 embedding, reasoner prefix) use it.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(image.shape)).encode())
    h.update(repr(image.dtype.str).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()
