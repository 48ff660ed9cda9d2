"""SAM2 memory attention + memory encoder on TensorRT engines (``SAM2Memory`` protocol).

Built by ``segzero-edge build-engines`` next to the encoder and decoder engines (profiles in
:mod:`segzero_edge.engine_cache`: 1..7 memory frames, 1..16 object pointers), run through the
same :class:`~.trt_engine.TrtEngines` as the segmenter: the image features of a
:class:`~segzero_edge.segmenter.tensorrt.TensorRTSegmenter` embedding are read in place, and
``attend`` returns ``pix_feat_with_mem`` as a device buffer the decoder reads in place (its
non-blocking stream is synchronised before it returns), taken from this object's
:class:`~segzero_edge.platform.cuda.DevicePool`: once the tracker drops it the next frame
reuses it, so steady-state tracking makes no ``cudaMalloc`` / ``cudaFree``. Memory features
come back to the host (the tracker keeps them in bfloat16).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..backends import ImageEmbedding
from ..layout import (
    SAM2_MEMORY_ATTENTION_INPUTS,
    SAM2_MEMORY_ATTENTION_OUTPUTS,
    SAM2_MEMORY_DYNAMIC,
    SAM2_MEMORY_ENCODER_INPUTS,
    SAM2_MEMORY_ENCODER_OUTPUTS,
)
from ..platform.cuda import DeviceBuffer, synchronize
from .memory import TrackingConfig, attention_feeds, encoder_feeds
from .trt_engine import TrtEngines


class TensorRTMemory(TrtEngines):
    """The two memory engines built on this device.

    ``close()`` waits for a call in progress on another thread; later calls raise
    ``RuntimeError``. Raises :class:`~.trt_engine.EngineLoadError` when an engine file cannot
    be loaded here; nothing stays allocated then.
    """

    name = "tensorrt"

    def __init__(
        self,
        attention_plan: str | os.PathLike[str],
        encoder_plan: str | os.PathLike[str],
        *,
        config: TrackingConfig,
        device: int = 0,
    ) -> None:
        self.config = config
        self.max_rows: dict[str, int] = {}
        """Rows of each dynamic memory-attention input at the engine profile's maximum."""
        plans = {"memory attention": Path(attention_plan), "memory encoder": Path(encoder_plan)}
        super().__init__(plans, device)

    def _open(self, plans: Mapping[str, Path]) -> None:
        self._attention = self._load(
            plans["memory attention"], "memory attention",
            SAM2_MEMORY_ATTENTION_INPUTS, SAM2_MEMORY_ATTENTION_OUTPUTS,
        )  # fmt: skip
        self._encoder = self._load(
            plans["memory encoder"], "memory encoder",
            SAM2_MEMORY_ENCODER_INPUTS, SAM2_MEMORY_ENCODER_OUTPUTS,
        )  # fmt: skip
        att, enc = self._attention, self._encoder
        self.max_rows = {name: att.profile_max(name)[0] for name in SAM2_MEMORY_DYNAMIC}
        for name in SAM2_MEMORY_DYNAMIC:  # inputs at their profile maximum
            self._buffer(name, att.shape(name, {0: self.max_rows[name]}), att.dtype(name))
        for name in ("mask_logits", "object_score_logits", "is_mask_from_pts", "maskmem_features"):
            self._buffer(name, enc.shape(name), enc.dtype(name))

    def attend(
        self,
        embedding: ImageEmbedding,
        memory: np.ndarray,
        memory_tpos: np.ndarray,
        obj_ptrs: np.ndarray,
        obj_ptr_tpos: np.ndarray,
    ) -> DeviceBuffer:
        """``pix_feat_with_mem`` on the device (see :class:`~.memory.SAM2Memory`)."""
        with self._lock:
            stream = self._require_open()
            feeds = attention_feeds(memory, memory_tpos, obj_ptrs, obj_ptr_tpos, self.config)
            att = self._attention
            embed = embedding.image_embed
            att.bind(
                "image_embed", self._device_ptr(att, "image_embed", embed, att.shape("image_embed"))
            )
            for name, host in feeds.items():
                rows = host.shape[0]
                if rows > self.max_rows[name]:
                    raise ValueError(
                        f"{rows} rows of {name} exceed the engine's profile maximum "
                        f"{self.max_rows[name]} (rebuild the engines with a larger profile)"
                    )
                self._buffers[name].upload(host, stream)
                att.bind(name, self._buffers[name].ptr)
                att.set_input_shape(name, host.shape)
            (out_name,) = SAM2_MEMORY_ATTENTION_OUTPUTS
            out = self._pool.buffer(att.shape(out_name), att.dtype(out_name))
            att.bind(out_name, out.ptr)
            att.enqueue(stream)
            synchronize(stream)
            return out

    def encode_memory(
        self,
        embedding: ImageEmbedding,
        mask_logits: np.ndarray,
        object_score_logits: np.ndarray,
        is_mask_from_pts: bool,
    ) -> np.ndarray:
        """``maskmem_features [1, 64, 64, 64]`` float32 on the host."""
        with self._lock:
            stream = self._require_open()
            feeds = encoder_feeds(mask_logits, object_score_logits, is_mask_from_pts)
            enc = self._encoder
            embed = embedding.image_embed
            enc.bind(
                "image_embed", self._device_ptr(enc, "image_embed", embed, enc.shape("image_embed"))
            )
            for name, host in feeds.items():
                self._buffers[name].upload(host, stream)
                enc.bind(name, self._buffers[name].ptr)
            (out_name,) = SAM2_MEMORY_ENCODER_OUTPUTS
            enc.bind(out_name, self._buffers[out_name].ptr)
            enc.enqueue(stream)
            return self._buffers[out_name].download(stream).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"TensorRTMemory(device={self.device})"
