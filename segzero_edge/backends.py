"""The backend interfaces the pipeline talks to, and what they return.

A reasoner turns the 840 x 840 image and the prompt into text; a segmenter turns the
1024 x 1024 normalised image into an embedding, then prompts into low-resolution mask
logits. Upsampling and thresholding stay outside the backends (``segzero_edge.pixels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from .platform.cuda import DeviceBuffer


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
    """Vision-language reasoner: ``image`` is the family's square resize (``resize_size`` x
    ``resize_size`` x 3 uint8 RGB).

    Members:
        name: a label for messages and timings (``llama.cpp``).
        device_kind: ``"cpu"`` or ``"gpu"``: where its layers run (the pipeline overlaps the
            reasoner and SAM2 by it).
        n_threads: CPU threads it computes with, None when that is not its to say.
        caches_prefix: whether ``generate`` keeps the state after a frame's image tokens
            under ``frame_key`` and restores it for a later prompt on the same key (then only
            the prompt's own tokens are evaluated); a reasoner without a cache ignores the key.
        generate: one answer; ``frame_key`` names the frame (its content hash) or is None.
    """

    @property
    def name(self) -> str: ...

    @property
    def device_kind(self) -> str: ...

    @property
    def n_threads(self) -> int | None: ...

    @property
    def caches_prefix(self) -> bool: ...

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput: ...

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


SegmenterBackend = Literal["onnxruntime", "tensorrt"]
"""How a segmenter runs SAM2: the exported ONNX graphs on onnxruntime (any execution provider),
or the TensorRT engines ``segzero-edge build-engines`` built on this device. The video memory
(:func:`segzero_edge.bundle_memory.open_memory`) runs on the same backend."""


@runtime_checkable
class Segmenter(Protocol):
    """SAM2 image encoder + prompt/mask decoder.

    ``encode`` takes ``[1, 3, 1024, 1024]`` float32 (mean/std normalised).
    ``decode`` takes a batch of B prompts on that image, ``point_coords [B, P, 2]`` float32 scaled
    to the 1024 x 1024 input and ``point_labels [B, P]`` float32 (1 positive, 0 negative, 2/3 box
    corners), and optionally ``mask_input [1, 1, 256, 256]`` low-res logits applied to every
    prompt, and returns all the decoder's masks per prompt: low-res logits
    ``[B, 4, 256, 256]`` and IoU ``[B, 4]`` (index 0 is the single-mask output, 1..3 the
    multimask outputs), each row what decoding that prompt alone gives (SAM2's
    ``MaskDecoder.predict_masks`` with ``repeat_image=True``); larger batches than
    ``max_prompts`` are split into several calls inside ``decode``.

    Members:
        name: a label for messages and timings (``onnxruntime-cpu``, ``tensorrt``).
        backend: which runtime runs the graphs (:data:`SegmenterBackend`).
        device_kind: ``"cpu"`` or ``"gpu"``: where the graphs run (the pipeline overlaps the
            reasoner and SAM2 by it).
        max_prompts: prompts per decoder call, None for any number.
        providers: onnxruntime execution providers in use, first preferred (empty for the
            TensorRT engines).
        threads: CPU threads onnxruntime runs with (None: its default, or not on the CPU).
    """

    @property
    def name(self) -> str: ...

    @property
    def backend(self) -> SegmenterBackend: ...

    @property
    def device_kind(self) -> str: ...

    @property
    def max_prompts(self) -> int | None: ...

    @property
    def providers(self) -> list[str]: ...

    @property
    def threads(self) -> int | None: ...

    def encode(self, image: np.ndarray) -> ImageEmbedding: ...

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        *,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


@runtime_checkable
class TrackingSegmenter(Segmenter, Protocol):
    """A segmenter whose decoder also gives what SAM2's video tracking needs.

    ``can_track``: whether the decoder has the tracking outputs (a bundle exported before
    tracking has not; re-export it). ``decode_track``: :meth:`Segmenter.decode` of at most
    ``max_prompts`` prompts without a mask prompt, plus ``object_score_logits [B, 1]`` (> 0:
    the object is present) and ``obj_ptr [B, 4, 256]`` (the object pointer of each mask
    token), float32; ``RuntimeError`` when ``can_track`` is False, ``ValueError`` for more
    than ``max_prompts`` prompts.
    """

    @property
    def can_track(self) -> bool: ...

    def decode_track(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


@runtime_checkable
class DeviceSegmenter(Segmenter, Protocol):
    """A segmenter on CUDA whose input and output live in device memory, for the CUDA
    pre/post-processing kernels (:mod:`segzero_edge.cuda_pixels`).

    ``device``: the CUDA device ordinal. ``stream``: the CUDA stream all its work is queued on
    (an int handle). ``image_buffer``: the encoder's input ``[1, 3, 1024, 1024]`` on the
    device (float32 or float16, by the engine), which a kernel may write before
    ``encode_loaded`` encodes it. ``decode_on_device``: at most ``max_prompts`` prompts ->
    IoU ``[B, 4]`` float32 on the host, the logits left in ``mask_buffer``
    (``[max_prompts, 4, 256, 256]`` float32 on the device, valid until the next decode on
    ``stream``). Callers serialise calls (one at a time per segmenter).
    """

    @property
    def device(self) -> int: ...

    @property
    def stream(self) -> int: ...

    @property
    def image_buffer(self) -> DeviceBuffer: ...

    @property
    def mask_buffer(self) -> DeviceBuffer: ...

    def encode_loaded(self) -> ImageEmbedding: ...

    def decode_on_device(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> np.ndarray: ...
