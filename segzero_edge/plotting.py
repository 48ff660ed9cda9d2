"""Pictures of a result: each object's mask in its own colour, outline, box, points, label.

Runtime-only (numpy and Pillow, both runtime dependencies): no matplotlib, no torch. Used by
:meth:`Segmentation.plot <segzero_edge.types.Segmentation.plot>` / ``save``, the ``segment``
command's ``--overlay``, the ``track`` command's GIF and the ROS overlay message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .options import real_number

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (0, 130, 200),
    (60, 180, 75),
    (255, 170, 0),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (170, 110, 40),
    (0, 128, 128),
    (128, 0, 0),
)
"""Object ``i`` is drawn in ``PALETTE[i % len(PALETTE)]`` (RGB)."""
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
MAX_QUERY_CHARS = 40


def color(index: int) -> tuple[int, int, int]:
    """The RGB colour of object ``index``."""
    return PALETTE[index % len(PALETTE)]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def frame_rgb(result: Any, image: Any = None) -> np.ndarray:
    """``image`` (or the result's own :attr:`~Segmentation.image`) as H x W x 3 uint8 RGB.

    Raises ``ValueError`` when there is none, or it is not the mask's size."""
    from .image import NV12Frame, load_image
    from .pixels import nv12_to_rgb

    src = result.image if image is None else image
    if src is None:
        raise ValueError(
            "this result holds no image (a device-memory frame, or read from JSON): pass "
            "plot(image=...) with the H x W x 3 uint8 RGB frame"
        )
    if isinstance(src, NV12Frame):
        if src.on_device:
            raise ValueError("an NV12 frame in device memory cannot be drawn: pass a host image")
        rgb = nv12_to_rgb(src)
    else:
        rgb = load_image(src)
    if rgb.shape[:2] != result.mask.shape:
        h, w = result.mask.shape
        raise ValueError(
            f"the image is {rgb.shape[1]} x {rgb.shape[0]} but the result is {w} x {h}: pass "
            "the frame the result was computed on"
        )
    return rgb


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its border (4-neighbourhood erosion)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    border: np.ndarray = mask & ~inner
    return border


def object_label(result: Any, index: int) -> str:
    """``"<index + 1>: <query> (IoU <iou>)"``, the query cut to :data:`MAX_QUERY_CHARS`."""
    query = " ".join(result.query.split())
    if len(query) > MAX_QUERY_CHARS:
        query = query[: MAX_QUERY_CHARS - 3] + "..."
    text = f"{index + 1}: {query}" if query else f"object {index + 1}"
    if index < len(result.iou_predictions):
        text += f" (IoU {result.iou_predictions[index]:.2f})"
    return text


def _banner(draw: Any, text: str, xy: tuple[int, int], font: Any, fill: Any, anchor: str) -> None:
    left, top, right, bottom = draw.textbbox(xy, text, font=font, anchor=anchor)
    pad = 3
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=fill)
    draw.text(xy, text, font=font, anchor=anchor, fill=(255, 255, 255))


def plot(
    result: Any,
    image: Any = None,
    *,
    alpha: float = 0.45,
    title: str | None = None,
    stamp: str | None = None,
    labels: bool = True,
) -> np.ndarray:
    """``result`` drawn on ``image``: H x W x 3 uint8 RGB.

    Object ``i``'s mask is blended with :func:`color` ``(i)`` (``alpha`` its weight) and
    outlined in it; its box (the module convention of :mod:`segzero_edge.types`), its points
    (filled dots with a white rim) and, with ``labels``, :func:`object_label` on a patch of
    its colour above the box. ``title``: a line across the top (black band); ``stamp``: a
    red note in the bottom-right corner (e.g. "random weights"). ``image``: as
    :func:`frame_rgb`. Raises ``ValueError`` for a missing or mis-sized image or an
    ``alpha`` outside [0, 1].
    """
    from PIL import Image, ImageDraw

    if not 0.0 <= real_number("alpha", alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = frame_rgb(result, image)
    h, w = rgb.shape[:2]
    line = max(1, round(min(h, w) / 240))
    out = rgb.astype(np.float32)
    for i, m in enumerate(result.object_masks):
        tint = np.asarray(color(i), dtype=np.float32)
        out[m] = (1.0 - alpha) * out[m] + alpha * tint
    for i, m in enumerate(result.object_masks):
        out[_outline(m, line)] = color(i)
    pic = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pic)
    font = _font(max(11, round(min(h, w) / 30)))
    radius = max(3, round(min(h, w) / 100))
    for i, obj in enumerate(result.objects):
        c = color(i)
        if obj.box is not None:
            x1, y1, x2, y2 = obj.box  # exclusive right/bottom: PIL's rectangle includes both
            draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=c, width=line)
        for x, y in obj.points:
            draw.ellipse(
                (x - radius, y - radius, x + radius, y + radius), fill=c, outline=(255, 255, 255)
            )
        if labels and obj.box is not None:
            x1, y1 = obj.box[0], obj.box[1]
            text = object_label(result, i)
            _, top, _, bottom = draw.textbbox((0, 0), text, font=font)
            above = y1 - (bottom - top) - 8 >= 0
            xy, anchor = ((x1 + 3, y1 - 4), "ld") if above else ((x1 + 3, y1 + 4), "la")
            _banner(draw, text, xy, font, c, anchor)
    if title:
        _banner(draw, title, (4, 4), font, (0, 0, 0), "la")
    if stamp:
        _banner(draw, stamp, (w - 4, h - 4), font, (200, 0, 0), "rd")
    return np.asarray(pic)


def save(result: Any, path: str | os.PathLike[str], image: Any = None, **options: Any) -> None:
    """:func:`plot` written to ``path`` (PNG, or JPEG for ``.jpg`` / ``.jpeg``) with
    :func:`segzero_edge.fileio.atomic_path`: the file appears complete or not at all.
    Raises ``ValueError`` for another suffix (before drawing)."""
    from PIL import Image

    from .fileio import atomic_path

    dest = Path(path)
    fmt = SAVE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{dest}: cannot tell the picture format from {dest.suffix or 'no suffix'!r}; "
            f"use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    pic = Image.fromarray(plot(result, image, **options), "RGB")
    with atomic_path(dest) as tmp:
        pic.save(tmp, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))


__all__ = ["PALETTE", "color", "frame_rgb", "object_label", "plot", "save"]
