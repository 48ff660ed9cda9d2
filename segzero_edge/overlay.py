"""Pictures of a result: the mask as a PNG and an overlay with boxes and points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .types import Segmentation

if TYPE_CHECKING:
    from PIL.Image import Image


def mask_image(mask: np.ndarray) -> Image:
    """The mask as an 8-bit grayscale image (255 inside)."""
    from PIL import Image

    return Image.fromarray(mask.astype(np.uint8) * 255, "L")


def overlay_image(image: np.ndarray, result: Segmentation, alpha: float = 0.5) -> Image:
    """``image`` with the mask tinted red, boxes in green and points in yellow."""
    from PIL import Image, ImageDraw

    out = image.astype(np.float32)
    tint = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    out[result.mask] = (1 - alpha) * out[result.mask] + alpha * tint
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pic)
    r = max(2, min(image.shape[:2]) // 100)
    for obj in result.objects:
        x1, y1, x2, y2 = obj.box  # corners as the model wrote them: maybe swapped
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        draw.rectangle(box, outline=(0, 255, 0), width=max(1, r // 2))
        for x, y in obj.points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 0), outline=(0, 0, 0))
    return pic
