"""The one object-decoding loop: an answer's objects -> SAM2 prompts -> each object's best mask.

Used by the pipeline (:class:`segzero_edge.pipeline.SegZeroEdge`), the evaluation reference
(Meta's ``SAM2ImagePredictor`` in ``segzero_train.evaluate.HFPredictor``) and the benchmark
(``segzero_bench.runtime_side``). The loop is the reference scripts' (Seg-Zero
``inference_scripts/infer.py`` and ``infer_multi_object.py``): for each object, the family's
SAM2 prompt, ``multimask_output=True``, keep the mask whose score sorts first in
``np.argsort(scores)[::-1]``; the caller ORs the kept masks.

The backend is a ``decode`` function that gets **all** prompts of one answer at once and
returns, per prompt, the candidate masks and their scores, so a backend may decode them in
one call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from ..backends import ImageEmbedding, Segmenter
from ..errors import BackendError
from ..types import ObjectPrompt
from .prompts import ObjectSamPrompt, Sam2PromptRule, batch_prompts, prompt_arrays
from .select import select_masks

DecodeFn = Callable[[Sequence[ObjectSamPrompt]], Sequence[tuple[np.ndarray, np.ndarray]]]
"""``decode(prompts) -> [(masks [C, ...], scores [C]), ...]``, one pair per prompt, where the
``C`` candidates are SAM2's multimask outputs (any mask representation: low-res logits for the
runtime, full-size boolean masks for ``SAM2ImagePredictor``)."""


@dataclass
class DecodedObjects:
    """The kept mask of every object, its score and the prompt SAM2 got for it."""

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
    """Decode every object (image-frame pixels) of one answer with ``decode``.

    Raises ``ValueError`` when ``decode`` returns a different number of results than prompts;
    errors of ``decode`` itself propagate.
    """
    prompts = [rule.for_object(o) for o in objects]
    if not prompts:
        return DecodedObjects([], [], [])
    results = list(decode(prompts))
    if len(results) != len(prompts):
        raise ValueError(f"decode returned {len(results)} results for {len(prompts)} prompts")
    masks, scores = [], []
    for cand, cand_scores in results:
        best = best_mask_index(cand_scores)
        masks.append(cand[best])
        scores.append(float(np.asarray(cand_scores)[best]))
    return DecodedObjects(prompts, masks, scores)


def backend_decoder(
    segmenter: Segmenter,
    embedding: ImageEmbedding,
    image_hw: tuple[int, int],
    lock: threading.Lock | None = None,
) -> DecodeFn:
    """A :data:`DecodeFn` on a runtime segmenter backend: the prompts' arrays
    (:func:`prompt_arrays`) stacked into one ``segmenter.decode`` call per distinct point count
    (:func:`batch_prompts`; one call for a whole answer) -> per prompt the three multimask
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
