"""Pixel work of the pipeline: SAM2 / reasoner pre-processing and mask post-processing.

Each function uses the native library (``csrc/``, via :mod:`segzero_edge.native`) when it is
built and falls back to the numpy code here, which is the reference the native code is
tested against. What is matched:

* SAM2 input: Meta's ``SAM2Transforms`` = ``ToTensor`` (x / 255) -> torchvision
  ``Resize((1024, 1024))`` on a float tensor, whose default ``antialias=True`` means a
  triangle filter with support scaled by the ratio when downscaling (like PIL) and plain
  bilinear when upscaling -> ``Normalize(mean, std)``.
* Reasoner input: PIL ``Image.resize((840, 840), BILINEAR)`` (antialiased, 8-bit fixed point;
  the native code follows the installed Pillow's pass order, which changed in Pillow 13).
* Masks: ``F.interpolate(bilinear, align_corners=False)`` then ``> 0``, OR over objects.
* NV12 frames (:class:`segzero_edge.image.NV12Frame`): ITU-R BT.601-7, limited range (Y
  16..235, Cb/Cr 16..240; default) or full range, chroma shared per 2 x 2 block, in the same
  16-bit fixed point as the native code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import native
from .image import Frame, NV12Frame
from .layout import REASONER_SIZE, SAM2_SIZE

SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskResult:
    """An H x W bool mask with its area and tight box ``(x1, y1, x2, y2)`` (None if empty)."""

    mask: np.ndarray
    area: int
    box: tuple[int, int, int, int] | None


# ---- checks ---------------------------------------------------------------------------------


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def _use_native() -> bool:
    return native.available()[0]


# ---- resampling weights (numpy twins of csrc/pixel_math.h) ----------------------------------


def _trunc_int(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.trunc(x).astype(np.int64)
    return out


def torch_aa_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's antialiased bilinear taps: ``(indices [n_out, K], float32 weights [n_out, K])``.

    Keeps torch's float32 / float64 promotions so the result matches it to ~1 ulp.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    support = scale if scale >= 1.0 else f32(1.0)
    invscale = f32(1.0 / float(scale)) if scale >= 1.0 else f32(1.0)
    center = (float(scale) * (np.arange(n_out, dtype=np.float64) + 0.5)).astype(f32)
    xmin = np.maximum(_trunc_int((center - support).astype(np.float64) + 0.5), 0)
    xend = np.minimum(_trunc_int((center + support).astype(np.float64) + 0.5), n_in)
    count = xend - xmin
    k = max(int(count.max()), 1)
    j = np.arange(k)
    d = (j[None, :] + xmin[:, None]).astype(f32) - center[:, None]
    x = np.abs(((d.astype(np.float64) + 0.5) * float(invscale)).astype(f32))
    w = np.where(x < 1.0, (1.0 - x.astype(np.float64)).astype(f32), f32(0.0))
    w = np.where(j[None, :] < count[:, None], w, f32(0.0)).astype(f32)
    total = np.zeros(n_out, dtype=f32)
    for t in range(k):  # sequential float32 sum, as torch does
        total = total + w[:, t]
    w = np.where(total[:, None] != 0, w / np.where(total == 0, f32(1), total)[:, None], w)
    idx = np.minimum(xmin[:, None] + j[None, :], n_in - 1)
    return idx, w.astype(f32)


def _apply_taps(x: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum over taps along ``axis``: ``out = x[idx0]*w0 + x[idx1]*w1 + ...`` in float32."""
    x = np.moveaxis(x, axis, -1)
    acc = x[..., idx[:, 0]] * w[:, 0]
    for t in range(1, idx.shape[1]):
        acc = acc + x[..., idx[:, t]] * w[:, t]
    return np.moveaxis(acc.astype(np.float32), -1, axis)


def resize_antialias(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """torchvision ``Resize`` (antialias=True) of ``[..., H, W]`` float32: width, then height."""
    iy, wy = torch_aa_taps(x.shape[-2], out_hw[0])
    ix, wx = torch_aa_taps(x.shape[-1], out_hw[1])
    return _apply_taps(_apply_taps(x.astype(np.float32), -1, ix, wx), -2, iy, wy)


def linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear (``align_corners=False``) taps in torch's float32 math: ``i0, i1, w0, w1``."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    real = scale * (np.arange(n_out, dtype=f32) + f32(0.5)) - f32(0.5)
    real = np.maximum(real, f32(0.0))
    i0 = np.minimum(real.astype(np.int64), n_in - 1)
    i1 = i0 + (i0 < n_in - 1)
    lam = np.clip(real - i0.astype(f32), f32(0.0), f32(1.0)).astype(f32)
    return i0, i1, (f32(1.0) - lam).astype(f32), lam


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[..., H, W]`` float32 (``align_corners=False``, no antialias)."""
    y0, y1, hy0, hy1 = linear_taps(x.shape[-2], out_hw[0])
    x0, x1, wx0, wx1 = linear_taps(x.shape[-1], out_hw[1])
    x = x.astype(np.float32, copy=False)
    rows = wx0 * x[..., x0] + wx1 * x[..., x1]
    out: np.ndarray = hy0[:, None] * rows[..., y0, :] + hy1[:, None] * rows[..., y1, :]
    return out.astype(np.float32)


# ---- NV12 -----------------------------------------------------------------------------------

# 16-bit fixed point BT.601 coefficients: (luma offset, luma gain, R<-V, G<-U, G<-V, B<-U).
_YUV_LIMITED = (16, 76309, 104597, 25675, 53279, 132201)
_YUV_FULL = (0, 65536, 91881, 22553, 46802, 116130)


def nv12_to_rgb(frame: np.ndarray | NV12Frame, full_range: bool = False) -> np.ndarray:
    """NV12 -> H x W x 3 RGB (BT.601-7; limited range unless ``full_range``).

    ``frame``: an :class:`NV12Frame` in host memory (its own ``full_range`` wins) or a packed
    ``(H * 3 / 2) x W`` uint8 array.
    """
    if not isinstance(frame, NV12Frame):
        native.frame_geometry(frame, "nv12")
        frame = NV12Frame.from_packed(frame, full_range=full_range)
    if frame.on_device:
        raise ValueError("an NV12 frame in device memory needs the CUDA path")
    assert isinstance(frame.y, np.ndarray) and isinstance(frame.uv, np.ndarray)
    h, w = frame.hw
    uv = frame.uv.reshape(h // 2, w // 2, 2)
    u = uv[..., 0].repeat(2, axis=0).repeat(2, axis=1)
    v = uv[..., 1].repeat(2, axis=0).repeat(2, axis=1)
    return yuv_to_rgb(frame.y, u, v, full_range=frame.full_range)


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, full_range: bool = False) -> np.ndarray:
    """Per-pixel Y, Cb, Cr (three H x W uint8 planes) -> H x W x 3 RGB, BT.601-7 in 16-bit
    fixed point (limited range unless ``full_range``); the chroma already upsampled."""
    off, ky, rv, gu, gv, bu = _YUV_FULL if full_range else _YUV_LIMITED
    cb = u.astype(np.int32) - 128
    cr = v.astype(np.int32) - 128
    c = (y.astype(np.int32) - off) * ky + 32768
    rgb = np.stack([c + rv * cr, c - gu * cb - gv * cr, c + bu * cb], axis=-1) >> 16
    out: np.ndarray = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def rgb_to_nv12(image: np.ndarray, full_range: bool = False) -> np.ndarray:
    """H x W x 3 uint8 RGB (H, W even) -> NV12 (BT.601), chroma averaged per 2 x 2 block."""
    img = _check_rgb(image).astype(np.float64)
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"NV12 needs an even width and height, got {w} x {h}")
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = (b - y) / 1.772
    v = (r - y) / 1.402
    if full_range:
        y, u, v = y, u + 128, v + 128
    else:
        y, u, v = 16 + y * 219 / 255, 128 + u * 224 / 255, 128 + v * 224 / 255
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    uv = np.stack([u, v], axis=-1).reshape(h // 2, w)
    out = np.concatenate([y, uv], axis=0)
    clipped: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return clipped


def _frame_to_rgb(frame: Frame) -> np.ndarray:
    if isinstance(frame, NV12Frame):
        return nv12_to_rgb(frame)
    return _check_rgb(frame)


def _native_args(frame: Frame) -> tuple[np.ndarray, str, np.ndarray | None]:
    """``(first plane, format, uv plane)`` for :func:`segzero_edge.native.preprocess`."""
    if isinstance(frame, NV12Frame):
        if frame.on_device:
            raise ValueError("an NV12 frame in device memory needs the CUDA path")
        assert isinstance(frame.y, np.ndarray) and isinstance(frame.uv, np.ndarray)
        return frame.y, frame.fmt, frame.uv
    return _check_rgb(frame), "rgb", None


# ---- numpy reference implementations ---------------------------------------------------------


def preprocess_sam_numpy(image: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """H x W x 3 uint8 RGB -> ``[1, 3, 1024, 1024]`` SAM2 input (antialiased resize, mean/std)."""
    chw = _check_rgb(image).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    out = resize_antialias(chw, (SAM2_SIZE, SAM2_SIZE))
    mean = np.asarray(SAM_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(SAM_STD, dtype=np.float32)[:, None, None]
    return ((out - mean) / std)[None].astype(dtype)


def preprocess_reasoner_numpy(image: np.ndarray, size: int = REASONER_SIZE) -> np.ndarray:
    """H x W x 3 uint8 RGB -> ``size`` x ``size`` x 3 uint8 (840 by default: the model
    family's ``resize_size``) with PIL's bilinear filter."""
    from PIL import Image

    img = Image.fromarray(_check_rgb(image), "RGB")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def postprocess_masks_numpy(logits: np.ndarray, out_hw: tuple[int, int]) -> MaskResult:
    """``[N, h, w]`` low-res logits -> OR of the upsampled masks thresholded at 0."""
    logits = _check_logits(logits)
    h, w = _check_hw(out_hw)
    mask = np.zeros((h, w), dtype=bool)
    for m in logits:
        mask |= resize_bilinear(m, (h, w)) > 0.0
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    box = None if ys.size == 0 else (int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1]))
    return MaskResult(mask=mask, area=int(mask.sum()), box=box)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    lg = np.asarray(logits, dtype=np.float32)
    if lg.ndim == 2:
        lg = lg[None]
    if lg.ndim != 3 or 0 in lg.shape:
        raise ValueError(f"mask logits must be [N, h, w] with N, h, w > 0, got {np.shape(logits)}")
    return lg


def _check_hw(out_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in out_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive, got {out_hw}")
    return h, w


# ---- public entry points (native when built, numpy otherwise) -------------------------------


def preprocess_sam(image: Frame, *, dtype: type = np.float32) -> np.ndarray:
    """H x W x 3 uint8 RGB (or host NV12 frame) -> ``[1, 3, 1024, 1024]`` SAM2 input."""
    if _use_native():
        first, fmt, uv = _native_args(image)
        out, _ = native.preprocess(first, fmt, uv=uv, reasoner=False, sam_dtype=dtype)
        assert out is not None
        return out
    return preprocess_sam_numpy(_frame_to_rgb(image), dtype)


def preprocess_reasoner(image: Frame, size: int = REASONER_SIZE) -> np.ndarray:
    """H x W x 3 uint8 RGB (or host NV12 frame) -> ``size`` x ``size`` x 3 uint8 (PIL
    bilinear). The native kernels serve the 840 x 840 resize; another ``size`` (a Qwen3-VL
    family's ``resize_size``) runs PIL's resize."""
    if size != REASONER_SIZE:
        return preprocess_reasoner_numpy(_frame_to_rgb(image), size)
    if _use_native():
        first, fmt, uv = _native_args(image)
        _, out = native.preprocess(first, fmt, uv=uv, sam=False)
        assert out is not None
        return out
    return preprocess_reasoner_numpy(_frame_to_rgb(image))


def postprocess_masks(logits: np.ndarray, out_hw: tuple[int, int]) -> MaskResult:
    """``[N, 256, 256]`` logits -> OR of bilinear-upsampled masks > 0, with area and box."""
    if _use_native():
        mask, area, box = native.postprocess_masks(_check_logits(logits), _check_hw(out_hw))
        return MaskResult(mask=mask, area=area, box=box)
    return postprocess_masks_numpy(logits, out_hw)
