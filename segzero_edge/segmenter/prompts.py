"""SAM2 prompt arrays: a box as two labelled corners, then positive points, in the 1024 frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..layout import SAM2_SIZE

SAM_SIZE = SAM2_SIZE
LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_BOX_TL, LABEL_BOX_BR = 0, 1, 2, 3


def prompt_arrays(
    box: Sequence[float] | None,
    points: Sequence[Sequence[float]],
    image_hw: tuple[int, int],
    labels: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(point_coords [1, P, 2] float32, point_labels [1, P] float32)`` as SAM2 builds them.

    Coordinates are original-image pixels; they are scaled into the 1024 frame
    (SAM2ImagePredictor's ``normalize_coords=True``: ``x / W * 1024``). The box corners come first.
    """
    h, w = image_hw
    coords: list[tuple[float, float]] = []
    labs: list[int] = []
    if box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        coords += [(x1, y1), (x2, y2)]
        labs += [LABEL_BOX_TL, LABEL_BOX_BR]
    point_labels = list(labels) if labels is not None else [LABEL_POSITIVE] * len(points)
    if len(point_labels) != len(points):
        raise ValueError(f"{len(points)} points but {len(point_labels)} labels")
    coords += [(float(p[0]), float(p[1])) for p in points]
    labs += point_labels
    if not coords:
        raise ValueError("a SAM2 prompt needs a box or at least one point")
    arr = np.asarray(coords, dtype=np.float32).reshape(1, -1, 2)
    # same float32 operation order as SAM2Transforms.transform_coords: (x / w) * 1024
    arr = (arr / np.array([w, h], dtype=np.float32)) * np.float32(SAM_SIZE)
    return arr.astype(np.float32), np.asarray(labs, dtype=np.float32).reshape(1, -1)
