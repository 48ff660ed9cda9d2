"""SAM2 prompts: a family's rule (which points, which labels), the arrays SAM2 gets, and their
batching (several prompts on one image in one decoder call).

A prompt is a box as two labelled corners, then the points, scaled to SAM2's 1024 x 1024
input, as
``SAM2ImagePredictor.predict(point_coords, point_labels, box)`` builds them (sam2
``sam2/sam2_image_predictor.py``: ``_prep_prompts`` then the box corners first in ``_predict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..layout import SAM2_MASK_INPUT_SHAPE, SAM2_SIZE
from ..types import ObjectPrompt

LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_BOX_TL, LABEL_BOX_BR = 0, 1, 2, 3


def prompt_arrays(
    box: Sequence[float] | None,
    points: Sequence[Sequence[float]],
    image_hw: tuple[int, int],
    labels: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(point_coords [1, P, 2] float32, point_labels [1, P] float32)`` as SAM2 builds them.

    Coordinates are original-image pixels; they are scaled to SAM2's 1024 x 1024 input
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
    arr = (arr / np.array([w, h], dtype=np.float32)) * np.float32(SAM2_SIZE)
    return arr.astype(np.float32), np.asarray(labs, dtype=np.float32).reshape(1, -1)


def check_prompt_batch(
    point_coords: np.ndarray, point_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``point_coords [B, P, 2]`` and ``point_labels [B, P]`` as C-contiguous float32 arrays.

    Raises ``ValueError`` naming the expected shapes when they do not fit (B, P >= 1).
    """
    coords = np.ascontiguousarray(point_coords, dtype=np.float32)
    labels = np.ascontiguousarray(point_labels, dtype=np.float32)
    if coords.ndim != 3 or coords.shape[2] != 2 or coords.shape[0] < 1 or coords.shape[1] < 1:
        raise ValueError(
            f"point_coords must be [B, P, 2] with B, P >= 1 (B prompts of P points), "
            f"got {coords.shape}"
        )
    if labels.shape != coords.shape[:2]:
        raise ValueError(f"point_labels must be [B, P] = {coords.shape[:2]}, got {labels.shape}")
    return coords, labels


def prompt_slices(n: int, max_prompts: int | None) -> list[slice]:
    """The decoder calls a batch of ``n`` prompts needs: consecutive slices of at most
    ``max_prompts`` prompts (one slice when ``max_prompts`` is None, any batch size)."""
    step = max_prompts or n
    if step < 1:
        raise ValueError(f"max_prompts must be >= 1, got {max_prompts}")
    return [slice(i, i + step) for i in range(0, n, step)]


def decode_in_calls(
    decode: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    point_coords: np.ndarray,
    point_labels: np.ndarray,
    max_prompts: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``decode`` (one decoder call) over ``[B, P, 2]`` / ``[B, P]`` prompts in calls of at
    most ``max_prompts`` (:func:`prompt_slices`): the masks and IoUs concatenated along B."""
    parts = [
        decode(point_coords[s], point_labels[s])
        for s in prompt_slices(len(point_coords), max_prompts)
    ]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


_NO_MASK = np.zeros(SAM2_MASK_INPUT_SHAPE, dtype=np.float32)
_NO_MASK.flags.writeable = False


def mask_prompt(mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """SAM2's ``mask_input`` ``[1, 1, 256, 256]`` float32 and ``has_mask_input`` ``[1]``
    float32 feeds: zeros and 0 without a mask prompt (SAM2's ``no_mask_embed``), else
    ``mask_input`` (low-res logits, any shape of that size) and 1. Raises ``ValueError`` for
    a mask of another size."""
    if mask_input is None:
        return _NO_MASK, np.zeros(1, dtype=np.float32)
    mask = np.ascontiguousarray(mask_input, dtype=np.float32)
    if mask.size != _NO_MASK.size:
        raise ValueError(
            f"mask_input must be {SAM2_MASK_INPUT_SHAPE} low-res logits, got {mask.shape}"
        )
    return mask.reshape(SAM2_MASK_INPUT_SHAPE), np.ones(1, dtype=np.float32)


def batch_prompts(
    prompts: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    max_prompts: int | None = None,
    in_order: bool = False,
) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Stack per-object prompts (``[1, P, 2]``, ``[1, P]`` from :func:`prompt_arrays`) into
    decoder batches: ``[(indices, point_coords [B, P, 2], point_labels [B, P]), ...]``.

    Prompts with the same number of points P share a batch (every object of a Seg-Zero answer
    has a box and the same number of points, so one batch per answer). Different P are not
    padded: SAM2's padding points take part in attention and would change the masks.

    Args:
        prompts: Each prompt's ``(point_coords [1, P, 2], point_labels [1, P])``.
        max_prompts: At most this many prompts a batch (:func:`prompt_slices`; ``None``: any
            number).
        in_order: Batch only consecutive prompts (each run of one P, split by
            ``max_prompts``), so the batches taken in turn give the prompts in their order:
            for a decoder whose outputs its next call overwrites. ``False``: every prompt of
            one P in one batch, batches in the order their P first appears.
    """
    groups: list[list[int]] = []
    open_groups: dict[int, list[int]] = {}  # point count -> the batch its next prompt joins
    for i, (coords, _) in enumerate(prompts):
        points = int(coords.shape[1])
        group = open_groups.get(points)
        if group is None:
            if in_order:
                open_groups.clear()  # a run ended: no later prompt joins an earlier batch
            group = open_groups[points] = []
            groups.append(group)
        group.append(i)
    return [
        (
            idx,
            np.concatenate([prompts[i][0] for i in idx], axis=0),
            np.concatenate([prompts[i][1] for i in idx], axis=0),
        )
        for group in groups
        for idx in (group[s] for s in prompt_slices(len(group), max_prompts))
    ]


@dataclass(frozen=True)
class ObjectSamPrompt:
    """What SAM2 gets for one object, in original-image pixels: ``box`` (or None), ``points``
    and one label per point (1 positive, 0 negative)."""

    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Sam2PromptRule:
    """A family's SAM2 prompt: the box and the first ``len(point_labels)`` points of an object,
    with these labels (Seg-Zero v1: two points, ``[1, 1]``; multi-object: one point, ``[1]``).

    An object with fewer points than the rule names (only possible without the answer grammar)
    gets the points it has, each with its label; the reference scripts fail on such answers.
    """

    point_labels: tuple[int, ...]
    box: bool = True

    def for_object(self, obj: ObjectPrompt) -> ObjectSamPrompt:
        """The SAM2 prompt of one object (image pixels: ``to_image_pixels``' output)."""
        points = tuple((p[0], p[1]) for p in obj.points[: len(self.point_labels)])
        box = tuple(obj.box) if self.box and obj.box is not None else None
        return ObjectSamPrompt(box, points, self.point_labels[: len(points)])  # type: ignore[arg-type]
