"""The device-logits decode runs through the one decode loop (``decode_objects`` with
``device_decoder``): each object's kept mask is the reference's choice among its multimask
outputs, copied to the object's slot before the next decoder call overwrites the buffer, in
calls of at most ``max_prompts`` prompts of one point count. No GPU: a recording stand-in for
the segmenter's ``decode_on_device`` and for ``CudaPixels.keep``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from segzero_edge.segmenter.decode import best_mask_index, decode_objects, device_decoder
from segzero_edge.segmenter.prompts import Sam2PromptRule, batch_prompts, prompt_arrays
from segzero_edge.types import ObjectPrompt

pytestmark = pytest.mark.runtime


class RecordingDevice:
    """``decode_on_device``: IoUs drawn per call (ties included), the call logged."""

    def __init__(self, max_prompts: int | None, seed: int = 0) -> None:
        self.max_prompts = max_prompts
        self.rng = np.random.default_rng(seed)
        self.log: list[tuple[Any, ...]] = []
        self.ious: list[np.ndarray] = []

    def decode_on_device(self, emb: Any, coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
        iou = self.rng.choice([0.1, 0.5, 0.9], size=(len(coords), 4)).astype(np.float32)
        self.log.append(("decode", len(coords), coords.shape[1]))
        self.ious.append(iou)
        return iou

    def keep(self, slot: int, row: int, plane: int) -> None:
        self.log.append(("keep", slot, row, plane, len(self.ious) - 1))


def _objects(point_counts: list[int]) -> list[ObjectPrompt]:
    return [
        ObjectPrompt((i, i, i + 10, i + 10), tuple((i + k, i) for k in range(n)))
        for i, n in enumerate(point_counts)
    ]


@pytest.mark.parametrize(
    ("points", "max_prompts"), [([1] * 5, 16), ([1] * 5, 2), ([1, 0, 0, 1, 1], 16), ([1], None)]
)
def test_each_object_keeps_the_references_choice_before_the_next_call(
    points: list[int], max_prompts: int | None
) -> None:
    dev = RecordingDevice(max_prompts)
    rule = Sam2PromptRule(point_labels=(1,))
    decoded = decode_objects(_objects(points), rule, device_decoder(dev, dev.keep, None, (40, 60)))  # type: ignore[arg-type]
    n = len(points)
    assert decoded.masks == list(range(n))  # each object's slot is its index
    keeps = [e for e in dev.log if e[0] == "keep"]
    assert [k[1] for k in keeps] == list(range(n))
    calls = [e for e in dev.log if e[0] == "decode"]
    for _, slot, row, plane, call in keeps:
        iou = dev.ious[call][row]
        assert plane == 1 + best_mask_index(iou[1:])  # a multimask output, argsort's choice
        assert decoded.scores[slot] == pytest.approx(float(iou[plane]))
    # a keep comes right after its own call: before the next call reuses the buffer
    call_no = -1
    for entry in dev.log:
        if entry[0] == "decode":
            call_no += 1
        else:
            assert entry[4] == call_no
    # calls: each run of one point count (box corners + the points), split by max_prompts
    step = max_prompts or 1
    want: list[tuple[int, int]] = []
    i = 0
    while i < n:
        j = i
        while j < n and points[j] == points[i]:
            j += 1
        want += [(min(step, j - k), 2 + points[i]) for k in range(i, j, step)]
        i = j
    assert [(size, n_points) for _, size, n_points in calls] == want


@pytest.mark.parametrize(
    ("max_prompts", "in_order", "want"),
    [
        (None, False, [[0, 2, 3, 5], [1, 4]]),  # the host decode: one batch per point count
        (2, False, [[0, 2], [3, 5], [1, 4]]),
        (None, True, [[0], [1], [2, 3], [4], [5]]),  # runs of one point count, in order
        (1, True, [[0], [1], [2], [3], [4], [5]]),
        (2, True, [[0], [1], [2, 3], [4], [5]]),  # the device decode
    ],
)
def test_batch_prompts_one_grouping_for_both_decoders(
    max_prompts: int | None, in_order: bool, want: list[list[int]]
) -> None:
    """The one batching function of the host decode (``backend_decoder``) and the device decode
    (``device_decoder``: ``in_order``, split by ``max_prompts``): prompts of one point count
    stacked in index order, never two point counts in a batch, never over ``max_prompts``."""
    points = [1, 0, 1, 1, 0, 1]
    arrays = [
        prompt_arrays(o.box, o.points[:n], (40, 60), labels=(1,) * n)
        for o, n in zip(_objects(points), points, strict=True)
    ]
    batches = batch_prompts(arrays, max_prompts=max_prompts, in_order=in_order)
    assert [idx for idx, _, _ in batches] == want
    for idx, coords, labels in batches:
        assert coords.shape == (len(idx), 2 + points[idx[0]], 2)
        assert labels.shape == coords.shape[:2]
        for row, i in enumerate(idx):
            np.testing.assert_array_equal(coords[row], arrays[i][0][0])
            np.testing.assert_array_equal(labels[row], arrays[i][1][0])
    if in_order:  # taken in turn, the batches give the prompts in their order
        assert [i for idx, _, _ in batches for i in idx] == list(range(len(points)))


def test_a_decoder_error_propagates_and_keeps_nothing_after_it() -> None:
    dev = RecordingDevice(1)

    def failing(emb: Any, coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if sum(e[0] == "decode" for e in dev.log) == 1:
            raise RuntimeError("CUDA error")
        return RecordingDevice.decode_on_device(dev, emb, coords, labels)

    dev.decode_on_device = failing  # type: ignore[method-assign]
    rule = Sam2PromptRule(point_labels=(1,))
    with pytest.raises(RuntimeError, match="CUDA error"):
        decode_objects(_objects([1, 1, 1]), rule, device_decoder(dev, dev.keep, None, (40, 60)))  # type: ignore[arg-type]
    assert [e[1] for e in dev.log if e[0] == "keep"] == [0]
