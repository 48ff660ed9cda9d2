"""The two backend interfaces the pipeline talks to, and what they return.

A reasoner turns the 840 x 840 image and the prompt into text; a segmenter turns the
1024 x 1024 normalised image into an embedding, then prompts into low-resolution mask
logits. Upsampling and thresholding stay outside the backends (``segzero_edge.pixels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class ReasonerOutput:
    """One generation. ``timings`` holds seconds for ``vision_encode``, ``prefill``, ``decode``."""

    text: str
    truncated: bool
    n_prompt_tokens: int = 0
    n_generated_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Reasoner(Protocol):
    """Vision-language reasoner: ``image`` is 840 x 840 x 3 uint8 RGB."""

    name: str

    def generate(self, image: np.ndarray, prompt: str) -> ReasonerOutput: ...

    def close(self) -> None: ...


@runtime_checkable
class PromptChecker(Protocol):
    """A reasoner that refuses a prompt without model work (tokenization only).

    ``check_prompt`` raises the ``ValueError`` its ``generate`` would raise for ``prompt``
    (e.g. one that does not fit the context). ``SegZeroEdge.segment_many`` checks every
    query's prompt with it before the first one runs, so a bad query loses no results.
    """

    def check_prompt(self, prompt: str) -> None: ...


@dataclass
class ImageEmbedding:
    """SAM2 image features as the decoder wants them (backend-owned arrays)."""

    image_embed: Any
    high_res_feats_0: Any
    high_res_feats_1: Any


@runtime_checkable
class Segmenter(Protocol):
    """SAM2 image encoder + prompt/mask decoder.

    ``encode`` takes ``[1, 3, 1024, 1024]`` float32 (mean/std normalised).
    ``decode`` takes a batch of B prompts on that image, ``point_coords [B, P, 2]`` float32 in
    the 1024 frame and ``point_labels [B, P]`` float32 (1 positive, 0 negative, 2/3 box
    corners), and returns all the decoder's masks per prompt: low-res logits
    ``[B, 4, 256, 256]`` and IoU ``[B, 4]`` (index 0 is the single-mask output, 1..3 the
    multimask outputs), each row what decoding that prompt alone gives (SAM2's
    ``MaskDecoder.predict_masks`` with ``repeat_image=True``).
    """

    name: str

    def encode(self, image: np.ndarray) -> ImageEmbedding: ...

    def decode(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...
