"""SAM2 memory attention + memory encoder on TensorRT engines (``SAM2Memory`` protocol).

Built by ``segzero-edge build-engines`` next to the encoder and decoder engines (profiles in
:mod:`segzero_edge.engine_cache`: 1..7 memory frames, 1..16 object pointers). Same TensorRT 10
API and :class:`~segzero_edge.cuda_memory.DeviceBuffer` s as the segmenter: the image
features of a :class:`~segzero_edge.segmenter.tensorrt.TensorRTSegmenter` embedding are read
in place, and ``attend`` returns ``pix_feat_with_mem`` as a device buffer the decoder reads
in place (its non-blocking stream is synchronised before it returns), taken from this
object's :class:`~segzero_edge.cuda_memory.DevicePool`: once the tracker drops it the next
frame reuses it, so steady-state tracking makes no ``cudaMalloc`` / ``cudaFree``. Memory
features come back to the host (the tracker keeps them in bfloat16).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends import ImageEmbedding
from ..cuda_memory import DeviceBuffer, DevicePool, create_stream, destroy_stream, synchronize
from ..device import cudart as _cudart
from ..device import import_tensorrt, tensorrt_logger
from ..layout import (
    SAM2_MEMORY_ATTENTION_INPUTS,
    SAM2_MEMORY_ATTENTION_OUTPUTS,
    SAM2_MEMORY_DYNAMIC,
    SAM2_MEMORY_ENCODER_INPUTS,
    SAM2_MEMORY_ENCODER_OUTPUTS,
)
from .memory import TrackingConfig
from .memory_onnxruntime import check_attention_inputs, encoder_feeds
from .tensorrt import EngineLoadError, _check, bind, open_device

if TYPE_CHECKING:
    import tensorrt

log = logging.getLogger(__name__)


class TensorRTMemory:
    """The two memory engines built on this device."""

    def __init__(
        self,
        attention_plan: str | os.PathLike[str],
        encoder_plan: str | os.PathLike[str],
        *,
        config: TrackingConfig,
        device: int = 0,
    ) -> None:
        trt = import_tensorrt()  # a clear TensorRTUnavailable when missing or too old
        plans = {"memory attention": Path(attention_plan), "memory encoder": Path(encoder_plan)}
        open_device(plans, device)
        self.config = config
        self.device = device
        self._buffers: dict[str, DeviceBuffer] = {}
        self._stream: Any = None
        self._pool = DevicePool()
        self._lock = threading.RLock()  # one call at a time; close() waits for it
        try:
            self._open(trt, plans)
        except BaseException:
            self._close()
            raise
        self.name = "tensorrt"

    def _open(self, trt: Any, plans: dict[str, Path]) -> None:
        self._runtime = trt.Runtime(tensorrt_logger())
        self._attention = self._load(
            plans["memory attention"], SAM2_MEMORY_ATTENTION_INPUTS, SAM2_MEMORY_ATTENTION_OUTPUTS
        )
        self._encoder = self._load(
            plans["memory encoder"], SAM2_MEMORY_ENCODER_INPUTS, SAM2_MEMORY_ENCODER_OUTPUTS
        )
        self._att_ctx = self._attention.create_execution_context()
        self._enc_ctx = self._encoder.create_execution_context()
        if self._att_ctx is None or self._enc_ctx is None:
            raise EngineLoadError("TensorRT could not create an execution context (out of memory?)")
        self._stream = create_stream()
        self.max_rows = {
            name: int(self._attention.get_tensor_profile_shape(name, 0)[2][0])
            for name in SAM2_MEMORY_DYNAMIC
        }
        for name in SAM2_MEMORY_DYNAMIC:  # inputs at their profile maximum
            shape = self._shape(self._attention, name, self.max_rows[name])
            self._buffers[name] = DeviceBuffer(shape, self._nptype(self._attention, name))
        for name in ("mask_logits", "object_score_logits", "is_mask_from_pts", "maskmem_features"):
            shape = self._shape(self._encoder, name)
            self._buffers[name] = DeviceBuffer(shape, self._nptype(self._encoder, name))

    def _load(
        self, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]
    ) -> tensorrt.ICudaEngine:
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineLoadError(
                f"TensorRT cannot load {path}: built with another TensorRT version or GPU? "
                "Rebuild it here: segzero-edge build-engines BUNDLE --force"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if set(names) != set(inputs) | set(outputs):
            raise EngineLoadError(
                f"{path} is not a SAM2 memory engine of this project: tensors {names}; "
                f"expected inputs {inputs} and outputs {outputs}"
            )
        return engine

    @staticmethod
    def _nptype(engine: tensorrt.ICudaEngine, name: str) -> np.dtype[Any]:
        import tensorrt as trt

        return np.dtype(trt.nptype(engine.get_tensor_dtype(name)))

    @staticmethod
    def _shape(engine: tensorrt.ICudaEngine, name: str, rows: int | None = None) -> tuple[int, ...]:
        dims = engine.get_tensor_shape(name)
        shape = [int(dims[i]) for i in range(len(dims))]
        if rows is not None:
            shape[0] = rows
        if any(d < 0 for d in shape):
            raise ValueError(f"engine tensor {name} has an unexpected dynamic shape {shape}")
        return tuple(shape)

    def _require_open(self) -> None:
        if self._stream is None:
            raise RuntimeError("TensorRTMemory is closed")
        _check(_cudart().cudaSetDevice(self.device), f"cudaSetDevice({self.device})")

    def _feature(self, engine: tensorrt.ICudaEngine, value: Any, key: str) -> int:
        """Device pointer of ``image_embed``: a DeviceBuffer in place, or a host array copied."""
        expected = self._shape(engine, "image_embed")
        if isinstance(value, DeviceBuffer):
            if value.shape != expected or value.ptr == 0:
                raise ValueError(f"image_embed is {value!r}, the engine wants shape {expected}")
            return value.ptr
        host = np.asarray(value)
        if tuple(host.shape) != expected:
            raise ValueError(f"image_embed has shape {host.shape}, expected {expected}")
        if key not in self._buffers:
            self._buffers[key] = DeviceBuffer(expected, self._nptype(engine, "image_embed"))
        self._buffers[key].upload(host, self._stream)
        return self._buffers[key].ptr

    def _run(self, ctx: tensorrt.IExecutionContext, what: str) -> None:
        if not ctx.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT {what} failed to enqueue (see the TensorRT log)")

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
            return self._attend(embedding, memory, memory_tpos, obj_ptrs, obj_ptr_tpos)

    def _attend(
        self,
        embedding: ImageEmbedding,
        memory: np.ndarray,
        memory_tpos: np.ndarray,
        obj_ptrs: np.ndarray,
        obj_ptr_tpos: np.ndarray,
    ) -> DeviceBuffer:
        self._require_open()
        feeds = check_attention_inputs(memory, memory_tpos, obj_ptrs, obj_ptr_tpos, self.config)
        ctx = self._att_ctx
        what = "memory attention"
        ptr = self._feature(self._attention, embedding.image_embed, "host:attn")
        bind(ctx, "image_embed", ptr, what)
        for name, host in feeds.items():
            rows = host.shape[0]
            if rows > self.max_rows[name]:
                raise ValueError(
                    f"{rows} rows of {name} exceed the engine's profile maximum "
                    f"{self.max_rows[name]} (rebuild the engines with a larger profile)"
                )
            self._buffers[name].upload(host, self._stream)
            bind(ctx, name, self._buffers[name].ptr, what)
            if not ctx.set_input_shape(name, host.shape):
                raise ValueError(f"TensorRT rejected input shape {host.shape} for {name}")
        (out_name,) = SAM2_MEMORY_ATTENTION_OUTPUTS
        out = self._pool.buffer(
            self._shape(self._attention, out_name), self._nptype(self._attention, out_name)
        )
        bind(ctx, out_name, out.ptr, what)
        self._run(ctx, what)
        synchronize(self._stream)
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
            return self._encode_memory(
                embedding, mask_logits, object_score_logits, is_mask_from_pts
            )

    def _encode_memory(
        self,
        embedding: ImageEmbedding,
        mask_logits: np.ndarray,
        object_score_logits: np.ndarray,
        is_mask_from_pts: bool,
    ) -> np.ndarray:
        self._require_open()
        feeds = encoder_feeds(mask_logits, object_score_logits, is_mask_from_pts)
        ctx = self._enc_ctx
        what = "memory encoder"
        bind(
            ctx,
            "image_embed",
            self._feature(self._encoder, embedding.image_embed, "host:enc"),
            what,
        )
        for name, host in feeds.items():
            self._buffers[name].upload(host, self._stream)
            bind(ctx, name, self._buffers[name].ptr, what)
        (out_name,) = SAM2_MEMORY_ENCODER_OUTPUTS
        bind(ctx, out_name, self._buffers[out_name].ptr, what)
        self._run(ctx, "memory encoder")
        return self._buffers[out_name].download(self._stream).astype(np.float32, copy=False)

    def close(self) -> None:
        """Free the device buffers, contexts, engines and the stream (idempotent); waits for a
        call in progress."""
        lock = getattr(self, "_lock", None)  # __init__ may have failed before it was set
        with lock if lock is not None else contextlib.nullcontext():
            self._close()

    def _close(self) -> None:
        for buf in getattr(self, "_buffers", {}).values():
            buf.free()
        self._buffers = {}
        for attr in ("_att_ctx", "_enc_ctx", "_attention", "_encoder", "_runtime"):
            if hasattr(self, attr):  # contexts first
                delattr(self, attr)
        if getattr(self, "_stream", None) is not None:
            stream, self._stream = self._stream, None
            destroy_stream(stream)
        if getattr(self, "_pool", None) is not None:
            self._pool.close()  # outputs still held are freed when dropped

    def __repr__(self) -> str:
        return f"TensorRTMemory(device={self.device})"
