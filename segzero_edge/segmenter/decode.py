"""The one object-decoding loop: an answer's objects -> SAM2 prompts -> each object's best mask.

Used by the pipeline (:class:`segzero_edge.pipeline.SegZeroEdge`), the evaluation reference
(Meta's ``SAM2ImagePredictor`` in ``segzero_train.evaluate.HFPredictor``) and the benchmark
(``segzero_bench.runtime_side``). The loop is the reference scripts' (Seg-Zero
``inference_scripts/infer.py`` and ``infer_multi_object.py``): for each object, the family's
SAM2 prompt, ``multimask_output=True``, keep the mask whose score sorts first in
``np.argsort(scores)[::-1]``; the caller ORs the kept masks.

The backend is a ``decode`` function that gets **all** prompts of one answer at once and
returns, per prompt, the candidate masks and their scores, so a backend may decode them in
one call: :func:`backend_decoder` (low-res logits to the host) and :func:`device_decoder` (the
logits stay on the GPU, each object's kept mask copied to a device slot) for the runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import DeviceSegmenter, ImageEmbedding, Segmenter
from ..errors import BackendError
from ..types import ObjectPrompt
from .prompts import ObjectSamPrompt, Sam2PromptRule, batch_prompts, prompt_arrays
from .select import select_masks

DecodeFn = Callable[[Sequence[ObjectSamPrompt]], Iterable[tuple[Any, np.ndarray]]]
"""``decode(prompts) -> [(masks [C, ...], scores [C]), ...]``, one pair per prompt in order,
where the ``C`` candidates are SAM2's multimask outputs (any indexable mask representation:
low-res logits for the runtime, full-size boolean masks for ``SAM2ImagePredictor``, device
slots for :func:`device_decoder`). It may be a lazy iterable: :func:`decode_objects` takes
each prompt's kept candidate (``masks[best]``) before asking for the next pair, so a backend
whose outputs live in a buffer reused by its next call may yield them call by call."""


KeepFn = Callable[[int, int, int], None]
"""``keep(slot, row, plane)``: copy mask ``plane`` of decoder row ``row`` to object ``slot``."""


@dataclass
class DecodedObjects:
    """The kept mask of every object (``masks[best]`` of its candidates: a device slot index
    for :func:`device_decoder`), its score and the prompt SAM2 got for it."""

    prompts: list[ObjectSamPrompt]
    masks: list[np.ndarray]
    scores: list[float]


def best_mask_index(scores: np.ndarray) -> int:
    """Index of the first mask of ``np.argsort(scores)[::-1]``, the reference scripts' choice
    (on equal scores the last of them, where ``argmax`` would take the first)."""
    return int(np.argsort(np.asarray(scores))[::-1][0])


def decode_objects(
    objects: Sequence[ObjectPrompt], rule: Sam2PromptRule, decode: DecodeFn
) -> DecodedObjects:
    """Decode every object (image pixels, :class:`~segzero_edge.types.ObjectPrompt`) of one
    answer with ``decode``.

    Raises ``ValueError`` when ``decode`` returns a different number of results than prompts;
    errors of ``decode`` itself propagate.
    """
    prompts = [rule.for_object(o) for o in objects]
    if not prompts:
        return DecodedObjects([], [], [])
    masks: list[Any] = []
    scores: list[float] = []
    for cand, cand_scores in decode(prompts):  # lazily: the kept mask before the next pair
        if len(masks) == len(prompts):
            raise ValueError(f"decode returned more results than the {len(prompts)} prompts")
        best = best_mask_index(cand_scores)
        masks.append(cand[best])
        scores.append(float(np.asarray(cand_scores)[best]))
    if len(masks) != len(prompts):
        raise ValueError(f"decode returned {len(masks)} results for {len(prompts)} prompts")
    return DecodedObjects(prompts, masks, scores)


def backend_decoder(
    segmenter: Segmenter,
    embedding: ImageEmbedding,
    image_hw: tuple[int, int],
    lock: threading.Lock | None = None,
) -> DecodeFn:
    """A :data:`DecodeFn` on a runtime segmenter backend: the prompts' arrays
    (:func:`prompt_arrays`) stacked into one ``segmenter.decode`` call per distinct point count
    (:func:`batch_prompts`, one call for a whole answer; the segmenter splits a batch over its
    ``max_prompts``) -> per prompt the three multimask
    low-res logits ``[3, 256, 256]`` and their scores ``[3]``. Backend errors become
    :class:`BackendError`."""

    def decode(prompts: Sequence[ObjectSamPrompt]) -> list[tuple[np.ndarray, np.ndarray]]:
        arrays = [prompt_arrays(p.box, p.points, image_hw, labels=p.labels) for p in prompts]
        out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(prompts)
        for idx, coords, labels in batch_prompts(arrays):
            with lock or nullcontext():
                try:
                    low, iou = segmenter.decode(embedding, coords, labels)
                except Exception as e:
                    raise BackendError(f"segmenter {segmenter.name!r} failed to decode: {e}") from e
            masks, ious = select_masks(low, iou, multimask_output=True)
            for row, i in enumerate(idx):
                out[i] = (masks[row], ious[row])
        return out

    return decode


class _DeviceCandidates:
    """The three multimask outputs of prompt ``row`` of the decoder's device buffer;
    ``[plane]`` keeps multimask output ``plane`` in object slot ``slot`` and returns ``slot``."""

    def __init__(self, keep: KeepFn, slot: int, row: int) -> None:
        self.keep, self.slot, self.row = keep, slot, row

    def __getitem__(self, plane: int) -> int:
        self.keep(self.slot, self.row, 1 + plane)  # plane 0 is the single-mask output
        return self.slot


def device_decoder(
    segmenter: DeviceSegmenter,
    keep: KeepFn,
    embedding: ImageEmbedding,
    image_hw: tuple[int, int],
) -> DecodeFn:
    """A :data:`DecodeFn` whose logits stay on the GPU (``segmenter.decode_on_device``).

    The prompts' arrays go in decoder calls of consecutive prompts with one point count
    (:func:`batch_prompts` with ``in_order``: batched as :func:`backend_decoder` batches them,
    but in prompt order), at most ``segmenter.max_prompts`` each (1 when ``None``) -> per
    prompt its device candidates and the scores of the three multimask outputs ``[3]``.
    Indexing a prompt's candidates with ``plane`` calls ``keep(slot, row, plane)`` (e.g.
    :meth:`CudaPixels.keep <segzero_edge.cuda_pixels.CudaPixels.keep>`), which copies that
    mask of decoder row ``row`` to slot ``slot`` (the prompt's index), and gives the slot.
    Lazy: :func:`decode_objects` keeps each prompt's mask before the next call overwrites the
    buffer. The caller holds the segmenter's lock for the whole loop; errors propagate as
    raised.
    """
    step = segmenter.max_prompts or 1

    def decode(prompts: Sequence[ObjectSamPrompt]) -> Iterator[tuple[Any, np.ndarray]]:
        arrays = [prompt_arrays(p.box, p.points, image_hw, labels=p.labels) for p in prompts]
        for idx, coords, labels in batch_prompts(arrays, max_prompts=step, in_order=True):
            iou = segmenter.decode_on_device(embedding, coords, labels)
            for row, i in enumerate(idx):
                yield _DeviceCandidates(keep, i, row), iou[row, 1:]

    return decode
