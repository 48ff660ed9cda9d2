"""SAM2 segmenter on onnxruntime: the two exported ONNX graphs, any execution provider.

Sessions, providers and the TensorRT execution provider's options: :mod:`.ort_session`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ImageEmbedding, SegmenterBackend
from ..layout import (
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_DECODER_TRACK_OUTPUTS,
    SAM2_ENCODER_INPUTS,
    SAM2_ENCODER_OUTPUTS,
    SAM2_IMAGE_SHAPE,
    SAM2_POINT_INPUTS,
)
from .ort_session import (
    CPU_EP,
    TENSORRT_EP,
    backend_name,
    check_graph_files,
    choose_providers,
    import_onnxruntime,
    open_graph,
    open_session,
    parse_profile_shapes,
    providers_per_graph,
    session_options,
    tensorrt_cache_dir,
    tensorrt_provider_options,
)
from .prompts import check_prompt_batch, decode_in_calls, mask_prompt


def decoder_has_batch_axis(ort: Any, path: Path) -> bool:
    """Whether the decoder graph's ``point_coords`` has a dynamic prompt axis (exported with
    the batch axis) rather than a fixed 1. Read from a CPU session without optimisations
    (cheap), before the TensorRT execution provider is given a profile for that axis."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = open_session(ort, path, options, [CPU_EP])
    shape = {i.name: i.shape for i in session.get_inputs()}[SAM2_POINT_INPUTS[0]]
    return bool(shape) and not isinstance(shape[0], int)


class OrtSegmenter:
    """SAM2 encoder + decoder ONNX graphs run with onnxruntime (a
    :class:`~segzero_edge.backends.TrackingSegmenter`).

    ``close()`` waits for a call in progress on another thread; later calls raise
    ``RuntimeError``.
    """

    backend: SegmenterBackend = "onnxruntime"

    def __init__(
        self,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        fp16: bool = True,
        trt_cache_dir: str | os.PathLike[str] | None = None,
        spin_wait: bool = False,
    ) -> None:
        """Open both graphs with ``providers`` (default: TensorRT > CUDA > CPU, those present).

        With onnxruntime's TensorRT execution provider the engines are FP16 (``fp16``) and
        cached in ``trt_cache_dir`` (default: ``engines/<device fingerprint>/onnxruntime-trt``
        next to the ONNX files; see :func:`tensorrt_provider_options`).

        ``spin_wait`` (default off): let idle pool threads spin between and after runs. Off,
        they sleep instead, so they do not take cores from llama.cpp, which runs before and
        after (and beside, when overlapped) every SAM2 call; ``python -m
        segzero_bench.sam2_session`` measures both. The graph optimisation level stays
        onnxruntime's default, ``ORT_ENABLE_ALL`` (its fusions and layout transforms).
        """
        ort = import_onnxruntime()
        self._lock = threading.Lock()
        self._encoder: Any = None
        self._decoder: Any = None
        paths = {"encoder": Path(encoder_path), "decoder": Path(decoder_path)}
        check_graph_files(paths, threads)
        chosen = choose_providers(providers, ort.get_available_providers())
        trt_options: dict[str, dict[str, Any]] = {"encoder": {}, "decoder": {}}
        trt_max_prompts: int | None = None  # the TensorRT EP's profile caps the batch
        self.trt_cache_dir: Path | None = None
        if TENSORRT_EP in chosen:
            self.trt_cache_dir = tensorrt_cache_dir(trt_cache_dir, paths["encoder"].parent)
            batched = decoder_has_batch_axis(ort, paths["decoder"])
            for role in trt_options:
                trt_options[role] = tensorrt_provider_options(
                    self.trt_cache_dir, fp16=fp16, decoder=role == "decoder",
                    prompts_profile=None if batched else (1, 1, 1),
                )  # fmt: skip
            max_shapes = parse_profile_shapes(trt_options["decoder"]["trt_profile_max_shapes"])
            trt_max_prompts = max_shapes[SAM2_POINT_INPUTS[0]][0]
        elif trt_cache_dir is not None:
            self.trt_cache_dir = Path(trt_cache_dir)
        self.threads = threads
        """onnxruntime's intra-op threads (``None``: its default, one per core)."""
        per_graph = providers_per_graph(chosen, trt_options)
        options = session_options(ort, threads, spin_wait=spin_wait)
        self._encoder = open_graph(
            ort, paths["encoder"], options, per_graph["encoder"],
            SAM2_ENCODER_INPUTS, SAM2_ENCODER_OUTPUTS,
        )  # fmt: skip
        self._decoder = open_graph(
            ort, paths["decoder"], options, per_graph["decoder"],
            SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS,
        )  # fmt: skip
        points_in = {i.name: i for i in self._decoder.get_inputs()}["point_coords"]
        batch_dim = points_in.shape[0] if points_in.shape else None
        self.max_prompts: int | None = batch_dim if isinstance(batch_dim, int) else None
        """Prompts per decoder call: None (any) for graphs with a batch axis, 1 for graphs
        exported before it (``decode`` then runs one call per prompt); with the TensorRT
        execution provider at most its profile's maximum (``decode`` splits larger batches)."""
        if trt_max_prompts is not None and TENSORRT_EP in self._decoder.get_providers():
            self.max_prompts = min(self.max_prompts or trt_max_prompts, trt_max_prompts)
        self.providers: list[str] = list(self._encoder.get_providers())
        """The execution providers the graphs run on, first preferred."""
        self.name: str = backend_name(self.providers)
        self.device_kind: str = "cpu" if self.providers[0] == CPU_EP else "gpu"
        """Where the graphs run: "cpu" or "gpu" (the first execution provider)."""

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """``[1, 3, 1024, 1024]`` float32 normalised image -> SAM2 image features."""
        if tuple(image.shape) != SAM2_IMAGE_SHAPE:
            raise ValueError(
                f"SAM2 encoder input must be {SAM2_IMAGE_SHAPE}, got {tuple(image.shape)}"
            )
        image = np.ascontiguousarray(image, dtype=np.float32)
        with self._lock:
            f0, f1, embed = self._session("_encoder").run(
                list(SAM2_ENCODER_OUTPUTS), {"image": image}
            )
        return ImageEmbedding(image_embed=embed, high_res_feats_0=f0, high_res_feats_1=f1)

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        *,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """B prompts on one image -> low-res logits ``[B, 4, 256, 256]`` and IoU ``[B, 4]``.

        ``point_coords [B, P, 2]`` float32 scaled to the 1024 x 1024 input and
        ``point_labels [B, P]`` (see :class:`~segzero_edge.backends.Segmenter`): one decoder
        call for the batch, giving per prompt what a call with that prompt alone gives.
        ``mask_input`` (optional, ``[1, 1, 256, 256]`` logits) is a previous low-res mask,
        applied to every prompt. Raises ``ValueError`` for badly shaped prompts.
        """
        coords, labels = check_prompt_batch(point_coords, point_labels)
        mask, has_mask = mask_prompt(mask_input)

        def call(c: np.ndarray, lb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            feeds = _decoder_feeds(embedding, c, lb, mask, has_mask)
            with self._lock:
                masks, iou = self._session("_decoder").run(list(SAM2_DECODER_OUTPUTS), feeds)
            return masks, iou

        return decode_in_calls(call, coords, labels, self.max_prompts)

    def _session(self, role: str) -> Any:
        session = self._encoder if role == "_encoder" else self._decoder
        if session is None:
            raise RuntimeError("this OrtSegmenter has been closed")
        return session

    @property
    def can_track(self) -> bool:
        """Whether the decoder graph has the tracking outputs (exported with tracking)."""
        names = {o.name for o in self._session("_decoder").get_outputs()}
        return set(SAM2_DECODER_TRACK_OUTPUTS) <= names

    def decode_track(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` plus ``object_score_logits [B, 1]`` and ``obj_ptr [B, 4, 256]``.

        Raises ``RuntimeError`` when the decoder graph predates tracking (re-export it).
        """
        if not self.can_track:
            raise RuntimeError(
                "the SAM2 decoder graph has no object score / pointer outputs (exported before "
                "tracking existed); re-export the bundle to use track()"
            )
        coords, labels = check_prompt_batch(point_coords, point_labels)
        if self.max_prompts is not None and coords.shape[0] > self.max_prompts:
            raise ValueError(f"decode_track takes at most {self.max_prompts} prompts here")
        feeds = _decoder_feeds(embedding, coords, labels, *mask_prompt(None))
        names = [*SAM2_DECODER_OUTPUTS, *SAM2_DECODER_TRACK_OUTPUTS]
        with self._lock:
            masks, iou, score, ptr = self._session("_decoder").run(names, feeds)
        return masks, iou, score, ptr

    def close(self) -> None:
        """Release both sessions (idempotent); waits for a call in progress."""
        with self._lock:
            self._encoder = None
            self._decoder = None

    def __repr__(self) -> str:
        return f"OrtSegmenter(name={self.name!r}, providers={self.providers})"


def _decoder_feeds(
    embedding: ImageEmbedding,
    point_coords: np.ndarray,
    point_labels: np.ndarray,
    mask_input: np.ndarray,
    has_mask_input: np.ndarray,
) -> dict[str, np.ndarray]:
    """The SAM2 decoder graph's inputs by name."""
    return {
        "image_embed": embedding.image_embed,
        "high_res_feats_0": embedding.high_res_feats_0,
        "high_res_feats_1": embedding.high_res_feats_1,
        "point_coords": point_coords,
        "point_labels": point_labels,
        "mask_input": mask_input,
        "has_mask_input": has_mask_input,
    }
