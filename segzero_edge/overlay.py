"""The mask of a result as a grayscale picture (the overlay is :mod:`segzero_edge.plotting`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def mask_image(mask: np.ndarray) -> Any:  # -> PIL.Image.Image
    """An H x W bool mask as an 8-bit grayscale PIL image (255 inside, 0 outside)."""
    from PIL import Image

    return Image.fromarray(mask.astype(np.uint8) * 255, "L")
