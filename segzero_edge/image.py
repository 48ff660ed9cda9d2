"""Turn what a caller passes as an image into an H x W x 3 uint8 RGB array."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ImageLike = Any
"""A path (str or os.PathLike), a PIL.Image.Image or an H x W x 3 uint8 array."""

MAX_PIXELS = 64_000_000
"""Refuse images above this many pixels (8000 x 8000): a caller mistake, not a photo."""


def _check_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what} must be H x W x 3 (RGB), got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must have dtype uint8, got {arr.dtype}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"{what} is empty: shape {tuple(arr.shape)}")
    if h * w > MAX_PIXELS:
        raise ValueError(f"{what} is too large: {w} x {h} pixels (limit {MAX_PIXELS})")
    return np.ascontiguousarray(arr)


def _from_pil(img: Any, what: str) -> np.ndarray:
    if img.mode != "RGB":
        if img.mode in ("L", "RGBA", "P", "LA", "CMYK", "YCbCr", "I;16", "I", "F", "1"):
            img = img.convert("RGB")
        else:
            raise ValueError(f"{what} has an unsupported PIL mode {img.mode!r}")
    return _check_array(np.asarray(img), what)


def load_image(image: ImageLike) -> np.ndarray:
    """Return ``image`` as a C-contiguous H x W x 3 uint8 RGB array.

    Accepts a file path, a PIL image (converted to RGB) or an H x W x 3 uint8 array (RGB).
    Anything else raises ``ValueError``; a missing file raises ``FileNotFoundError``.
    """
    if isinstance(image, np.ndarray):
        return _check_array(image, "image array")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                return _from_pil(img, f"image {path}")
        except (UnidentifiedImageError, OSError) as e:
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
