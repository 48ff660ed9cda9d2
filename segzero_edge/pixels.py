"""Pixel work of the pipeline: SAM2 / reasoner pre-processing and mask post-processing.

Each function uses the native library (``csrc/``, via :mod:`segzero_edge.native`) when it is
built and falls back to the numpy code here, which is the reference the native code is
tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .prompt import REASONER_SIZE

SAM_SIZE = 1024
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskResult:
    """An H x W bool mask with its area and tight box ``(x1, y1, x2, y2)`` (None if empty)."""

    mask: np.ndarray
    area: int
    box: tuple[int, int, int, int] | None


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear sampling with ``align_corners=False``."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[..., H, W]`` float32 (``align_corners=False``, no antialias)."""
    oh, ow = out_hw
    y0, y1, fy = _linear_taps(x.shape[-2], oh)
    x0, x1, fx = _linear_taps(x.shape[-1], ow)
    top = x[..., y0, :]
    bot = x[..., y1, :]
    rows = top + (bot - top) * fy[:, None]
    left = rows[..., x0]
    right = rows[..., x1]
    return (left + (right - left) * fx).astype(np.float32)


def preprocess_sam_numpy(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> ``[1, 3, 1024, 1024]`` float32, resized and mean/std normalised."""
    chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
    out = resize_bilinear(chw, (SAM_SIZE, SAM_SIZE))
    mean = np.asarray(SAM_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(SAM_STD, dtype=np.float32)[:, None, None]
    return ((out - mean) / std)[None].astype(np.float32)


def preprocess_reasoner_numpy(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> 840 x 840 x 3 uint8 with PIL's bilinear filter."""
    from PIL import Image

    img = Image.fromarray(image, "RGB").resize((REASONER_SIZE, REASONER_SIZE), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def postprocess_masks_numpy(logits: np.ndarray, out_hw: tuple[int, int]) -> MaskResult:
    """``[N, h, w]`` low-res logits -> OR of the upsampled masks thresholded at 0."""
    if logits.ndim == 2:
        logits = logits[None]
    h, w = out_hw
    mask = np.zeros((h, w), dtype=bool)
    for m in logits.astype(np.float32):
        mask |= resize_bilinear(m, (h, w)) > 0.0
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    box = None if ys.size == 0 else (int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1]))
    return MaskResult(mask=mask, area=int(mask.sum()), box=box)


def preprocess_sam(image: np.ndarray) -> np.ndarray:
    return preprocess_sam_numpy(image)


def preprocess_reasoner(image: np.ndarray) -> np.ndarray:
    return preprocess_reasoner_numpy(image)


def postprocess_masks(logits: np.ndarray, out_hw: tuple[int, int]) -> MaskResult:
    return postprocess_masks_numpy(logits, out_hw)
