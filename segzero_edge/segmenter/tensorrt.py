"""SAM2 segmenter on TensorRT engines built on this device (``segzero-edge build-engines``).

TensorRT 10 API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``; TensorRT
older than 10 is refused, see :data:`segzero_edge.device.MIN_TENSORRT`) with device memory
from cuda-python's runtime bindings (:mod:`segzero_edge.cuda_memory`). ``encode`` leaves the
image features on the GPU: the returned :class:`~segzero_edge.backends.ImageEmbedding` holds
:class:`DeviceBuffer` s that ``decode`` reads in place, so several prompts (or queries) on one
frame encode it once. The features come from a :class:`DevicePool`: once a frame's embedding
is dropped its memory serves the next frame (steady-state ``encode`` / ``decode`` make no
``cudaMalloc`` / ``cudaFree``). All work is queued on one non-blocking CUDA stream.
``decode`` also accepts an embedding of numpy arrays (e.g. from the onnxruntime backend).
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
from ..cuda_memory import (
    CudaError,
    DeviceBuffer,
    DevicePool,
    check,
    create_stream,
    destroy_stream,
    synchronize,
)
from ..device import cudart as _cudart
from ..device import import_tensorrt, load_tensorrt, tensorrt_logger, tensorrt_supported
from ..layout import SAM2_DECODER_TRACK_OUTPUTS, SAM2_POINT_INPUTS
from .onnxruntime import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    IMAGE_SHAPE,
    MASK_INPUT_SHAPE,
)
from .prompts import check_prompt_batch

if TYPE_CHECKING:
    import tensorrt

log = logging.getLogger(__name__)

FEATURES = ("image_embed", "high_res_feats_0", "high_res_feats_1")
POINTS = SAM2_POINT_INPUTS


_check = check  # the name the memory engines use


class EngineLoadError(RuntimeError):
    """An engine file that passed the bookkeeping cannot be used here: TensorRT cannot
    deserialize it, it is not this project's SAM2 engine, or no execution context fits in
    memory. ``open_segmenter(backend="auto")`` falls back to onnxruntime on it."""


def bind(ctx: tensorrt.IExecutionContext, name: str, ptr: int, what: str) -> None:
    """``ctx.set_tensor_address(name, ptr)``, or ``RuntimeError`` naming the tensor: TensorRT
    returns False (and only logs) for a name that is not an input or output of the engine or
    a misaligned address; unchecked, that surfaces later as "failed to enqueue"."""
    if not ctx.set_tensor_address(name, int(ptr)):
        raise RuntimeError(
            f"TensorRT {what} engine refused the address {int(ptr):#x} for tensor {name!r} "
            "(no such input or output, or a misaligned pointer)"
        )


# cuda-python's major version must match the driver's CUDA: 13.x needs a CUDA 13 driver.
CUDA_PYTHON_HINT = "pip install 'cuda-python>=12.6,<13' on JetPack 6 (CUDA 12.6)"


def open_device(plans: dict[str, Path], device: int) -> None:
    """Check that every engine file of ``plans`` ({role: path}) exists, then make ``device``
    the current CUDA device. Raises ``FileNotFoundError`` naming the missing engine and how to
    build it, ``BackendError`` when CUDA refuses the device."""
    for role, path in plans.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"SAM2 {role} TensorRT engine not found: {path} "
                "(build it on this device: segzero-edge build-engines BUNDLE)"
            )
    _check(_cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def available() -> tuple[bool, str]:
    """Whether this backend can run here: TensorRT, cuda-python and a CUDA device."""
    trt, why = load_tensorrt()
    if trt is None:
        return False, why
    ok, why = tensorrt_supported(str(trt.__version__))
    if not ok:
        return False, why
    try:
        cudart = _cudart()
    except ImportError as e:
        return False, f"cuda-python not installed ({e}); {CUDA_PYTHON_HINT}"
    try:
        count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except Exception as e:  # driver libraries missing raise from inside cuda-python
        hint = f" (cuda-python newer than the driver? {CUDA_PYTHON_HINT})"
        return False, f"no usable CUDA device: {e}" + (hint if "Driver" in str(e) else "")
    if not count:
        return False, "no CUDA device"
    return True, f"TensorRT {trt.__version__}, {count} CUDA device(s)"


class TensorRTSegmenter:
    """SAM2 encoder + decoder TensorRT engines (``Segmenter`` protocol).

    ``close()`` waits for a call in progress on another thread; later calls raise
    ``RuntimeError``. Raises :class:`EngineLoadError` when an engine file cannot be loaded
    here, :class:`~segzero_edge.cuda_memory.CudaError` when device memory runs out; nothing
    stays allocated then.
    """

    def __init__(
        self,
        encoder_plan: str | os.PathLike[str],
        decoder_plan: str | os.PathLike[str],
        *,
        device: int = 0,
    ) -> None:
        trt = import_tensorrt()  # a clear TensorRTUnavailable when missing or too old
        plans = {"encoder": Path(encoder_plan), "decoder": Path(decoder_plan)}
        open_device(plans, device)
        self._lock = threading.RLock()  # one call at a time; close() waits for it
        self._buffers: dict[str, DeviceBuffer] = {}
        self._stream: Any = None
        self._pool = DevicePool()
        try:
            self._open(trt, plans)
        except BaseException:
            self._close()
            raise
        self.device = device
        self.tensorrt_version = str(trt.__version__)
        self.name = "tensorrt"
        self.device_kind = "gpu"

    def _open(self, trt: Any, plans: dict[str, Path]) -> None:
        self._runtime = trt.Runtime(tensorrt_logger())
        self._encoder = self._load(plans["encoder"], ENCODER_INPUTS, ENCODER_OUTPUTS)
        self._decoder = self._load(
            plans["decoder"], DECODER_INPUTS, DECODER_OUTPUTS, SAM2_DECODER_TRACK_OUTPUTS
        )
        names = {self._decoder.get_tensor_name(i) for i in range(self._decoder.num_io_tensors)}
        self._outputs = DECODER_OUTPUTS + tuple(
            n for n in SAM2_DECODER_TRACK_OUTPUTS if n in names
        )  # every output must be bound, those for tracking included
        for name in FEATURES:
            out_dt = self._encoder.get_tensor_dtype(name)
            in_dt = self._decoder.get_tensor_dtype(name)
            if out_dt != in_dt:
                raise EngineLoadError(
                    f"engine mismatch: encoder writes {name} as {out_dt}, decoder reads {in_dt}"
                )
        self._enc_ctx = self._encoder.create_execution_context()
        self._dec_ctx = self._decoder.create_execution_context()
        if self._enc_ctx is None or self._dec_ctx is None:
            raise EngineLoadError("TensorRT could not create an execution context (out of memory?)")
        self._stream = create_stream()
        max_shape = self._decoder.get_tensor_profile_shape(POINTS[0], 0)[2]
        self.max_points = int(max_shape[1])
        self.max_prompts = int(max_shape[0])
        """Prompts per decoder call (the engine profile's maximum; 1 for engines of a decoder
        exported before the batch axis). ``decode`` splits larger batches."""
        for name in ("image", *DECODER_INPUTS, *self._outputs):
            if name in FEATURES:
                continue  # features live in each ImageEmbedding
            engine = self._encoder if name == "image" else self._decoder
            shape = self._static_shape(engine, name)
            self._buffers[name] = DeviceBuffer(shape, self._nptype(engine, name))
        self._no_mask = np.zeros(MASK_INPUT_SHAPE, dtype=np.float32)
        self._mask_is_zero = False  # device mask_input / has_mask_input hold zeros

    def _load(
        self,
        path: Path,
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> tensorrt.ICudaEngine:
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineLoadError(
                f"TensorRT {self._trt_version()} cannot load {path}: built with another "
                "TensorRT version or GPU? Rebuild it here: "
                "segzero-edge build-engines BUNDLE --force"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if set(names) - set(optional) != set(inputs) | set(outputs):
            raise EngineLoadError(
                f"{path} is not a SAM2 engine of this project: tensors {names}; expected "
                f"inputs {inputs} and outputs {outputs}"
            )
        return engine

    @staticmethod
    def _trt_version() -> str:
        import tensorrt as trt

        return str(trt.__version__)

    @staticmethod
    def _nptype(engine: tensorrt.ICudaEngine, name: str) -> np.dtype[Any]:
        import tensorrt as trt

        return np.dtype(trt.nptype(engine.get_tensor_dtype(name)))

    def _static_shape(self, engine: tensorrt.ICudaEngine, name: str) -> tuple[int, ...]:
        """The engine's shape of ``name``, with the prompt and point dimensions at their
        profile maxima (the largest buffer a decoder call needs)."""
        dims = engine.get_tensor_shape(name)
        shape = [int(dims[i]) for i in range(len(dims))]
        if name in POINTS:
            shape[1] = self.max_points
        batched = (*POINTS, *DECODER_OUTPUTS, *SAM2_DECODER_TRACK_OUTPUTS)
        if engine is self._decoder and name in batched:
            shape[0] = self.max_prompts if shape[0] < 0 else shape[0]
        if any(d < 0 for d in shape):
            raise ValueError(f"engine tensor {name} has an unexpected dynamic shape {shape}")
        return tuple(shape)

    def _run(self, ctx: tensorrt.IExecutionContext, what: str) -> None:
        if not ctx.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT {what} failed to enqueue (see the TensorRT log)")

    @property
    def pool(self) -> DevicePool:
        """Where the image features' device memory comes from (and returns to)."""
        return self._pool

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """``[1, 3, 1024, 1024]`` float32 normalised image -> features kept on the device."""
        if tuple(image.shape) != IMAGE_SHAPE:
            raise ValueError(f"SAM2 encoder input must be {IMAGE_SHAPE}, got {tuple(image.shape)}")
        with self._lock:
            self._require_open()
            self._buffers["image"].upload(image, self._stream)
            return self.encode_loaded()

    @property
    def image_buffer(self) -> DeviceBuffer:
        """The encoder's input on the device: a CUDA pre-processing kernel may write it directly
        (queued on :attr:`stream`), then :meth:`encode_loaded` runs without a host copy."""
        self._require_open()
        return self._buffers["image"]

    @property
    def stream(self) -> int:
        """The CUDA stream (as an int handle) all work of this segmenter is queued on."""
        self._require_open()
        return int(self._stream)

    def encode_loaded(self) -> ImageEmbedding:
        """Run the encoder on what :attr:`image_buffer` holds; features stay on the device."""
        with self._lock:
            self._require_open()
            return self._encode_loaded()

    def _encode_loaded(self) -> ImageEmbedding:
        ctx = self._enc_ctx
        bind(ctx, "image", self._buffers["image"].ptr, "encoder")
        feats = {}
        for name in ENCODER_OUTPUTS:
            buf = self._pool.buffer(
                self._static_shape(self._encoder, name), self._nptype(self._encoder, name)
            )
            bind(ctx, name, buf.ptr, "encoder")
            feats[name] = buf
        self._run(ctx, "encoder")
        synchronize(self._stream)
        return ImageEmbedding(
            image_embed=feats["image_embed"],
            high_res_feats_0=feats["high_res_feats_0"],
            high_res_feats_1=feats["high_res_feats_1"],
        )

    def _feature_ptr(self, name: str, value: Any) -> int:
        expected = self._static_shape(self._decoder, name)
        if isinstance(value, DeviceBuffer):
            if value.shape != expected or value.ptr == 0:
                raise ValueError(
                    f"embedding {name} is {value!r}, the decoder wants shape {expected}"
                )
            return value.ptr
        host = np.asarray(value)
        if tuple(host.shape) != expected:
            raise ValueError(f"embedding {name} has shape {host.shape}, expected {expected}")
        key = f"host:{name}"
        if key not in self._buffers:
            self._buffers[key] = DeviceBuffer(expected, self._nptype(self._decoder, name))
        self._buffers[key].upload(host, self._stream)
        return self._buffers[key].ptr

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        *,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """B prompts in the 1024 frame -> low-res logits ``[B, 4, 256, 256]``, IoU ``[B, 4]``.

        ``point_coords [B, P, 2]``, ``point_labels [B, P]``: one engine call per
        :attr:`max_prompts` prompts. ``mask_input`` ``[1, 1, 256, 256]`` applies to every
        prompt. Raises ``ValueError`` for bad shapes or more points than the engine profile.
        """
        with self._lock:
            self._require_open()
            return self._decode(embedding, point_coords, point_labels, mask_input)

    def _decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        coords, labels = check_prompt_batch(point_coords, point_labels)
        b, n = coords.shape[:2]
        if n > self.max_points:
            raise ValueError(
                f"{n} prompt points exceed the engine's profile maximum of {self.max_points} "
                "(rebuild with a larger points profile)"
            )
        if b > self.max_prompts:
            step = self.max_prompts
            parts = [(coords[i : i + step], labels[i : i + step]) for i in range(0, b, step)]
            outs = [self._decode(embedding, c, lb, mask_input) for c, lb in parts]
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        self._enqueue_decode(embedding, coords, labels, mask_input)
        masks, iou = (
            self._buffers[name].download(self._stream, (b, *self._buffers[name].shape[1:]))
            for name in DECODER_OUTPUTS
        )
        return masks.astype(np.float32, copy=False), iou.astype(np.float32, copy=False)

    def decode_on_device(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> np.ndarray:
        """Like :meth:`decode` for at most :attr:`max_prompts` prompts, but the logits stay in
        :attr:`mask_buffer` (``[B, 4, 256, 256]`` on the device, valid until the next decode
        on this segmenter's stream); returns the IoU ``[B, 4]`` (float32)."""
        with self._lock:
            self._require_open()
            coords, labels = check_prompt_batch(point_coords, point_labels)
            b, n = coords.shape[:2]
            if n > self.max_points or b > self.max_prompts:
                raise ValueError(
                    f"{b} prompts of {n} points exceed the engine's profile ({self.max_prompts} "
                    f"prompts, {self.max_points} points)"
                )
            self._enqueue_decode(embedding, coords, labels, None)
            iou = self._buffers[DECODER_OUTPUTS[1]].download(self._stream, (b, 4))
            return iou.astype(np.float32, copy=False)

    @property
    def mask_buffer(self) -> DeviceBuffer:
        """The decoder's low-res mask logits output ``[max_prompts, 4, 256, 256]`` on the device."""
        self._require_open()
        return self._buffers[DECODER_OUTPUTS[0]]

    def _enqueue_decode(
        self,
        embedding: ImageEmbedding,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> None:
        """Queue one decoder call of ``B <= max_prompts`` checked prompts on the stream."""
        b, n = coords.shape[:2]
        inputs: list[tuple[str, np.ndarray]] = [("point_coords", coords), ("point_labels", labels)]
        if mask_input is not None or not self._mask_is_zero:
            mask: np.ndarray
            if mask_input is None:
                mask, has_mask = self._no_mask, np.zeros(1, dtype=np.float32)
            else:
                mask = np.asarray(mask_input, dtype=np.float32).reshape(MASK_INPUT_SHAPE)
                has_mask = np.ones(1, dtype=np.float32)
            inputs += [("mask_input", mask), ("has_mask_input", has_mask)]
        ctx = self._dec_ctx
        for name in FEATURES:
            bind(ctx, name, self._feature_ptr(name, getattr(embedding, name)), "decoder")
        for name, host in inputs:
            self._buffers[name].upload(host, self._stream)
        if len(inputs) > 2:
            self._mask_is_zero = mask_input is None  # the zero mask stays until replaced
        for name in ("point_coords", "point_labels", "mask_input", "has_mask_input"):
            bind(ctx, name, self._buffers[name].ptr, "decoder")
        for name, shape in (("point_coords", (b, n, 2)), ("point_labels", (b, n))):
            if not ctx.set_input_shape(name, shape):
                raise ValueError(f"TensorRT rejected input shape {shape} for {name}")
        for name in self._outputs:
            bind(ctx, name, self._buffers[name].ptr, "decoder")
        self._run(ctx, "decoder")

    @property
    def can_track(self) -> bool:
        """Whether the decoder engine has the tracking outputs (object score, pointers)."""
        return set(SAM2_DECODER_TRACK_OUTPUTS) <= set(self._outputs)

    def decode_track(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` plus ``object_score_logits [B, 1]`` and ``obj_ptr [B, 4, 256]``, for at
        most :attr:`max_prompts` prompts (one engine call).

        Raises ``RuntimeError`` when the decoder predates tracking (re-export the bundle).
        """
        if not self.can_track:
            raise RuntimeError(
                "the SAM2 decoder engine has no object score / pointer outputs (exported "
                "before tracking existed); re-export the bundle and rebuild its engines"
            )
        b = int(np.shape(point_coords)[0])
        if b > self.max_prompts:
            raise ValueError(f"decode_track takes at most {self.max_prompts} prompts, got {b}")
        with self._lock:  # re-entrant: the outputs are read before another call runs
            masks, iou = self.decode(embedding, point_coords, point_labels)
            score, ptr = (
                self._buffers[name]
                .download(self._stream, (b, *self._buffers[name].shape[1:]))
                .astype(np.float32, copy=False)
                for name in SAM2_DECODER_TRACK_OUTPUTS
            )
        return masks, iou, score, ptr

    def _require_open(self) -> None:
        if self._stream is None:
            raise RuntimeError("this TensorRTSegmenter has been closed")
        if self.device != 0:  # the current device is per host thread
            _check(_cudart().cudaSetDevice(self.device), f"cudaSetDevice({self.device})")

    def to_numpy(self, value: Any) -> np.ndarray:
        """A host copy of an embedding field (a :class:`DeviceBuffer`, or an array as is)."""
        with self._lock:
            self._require_open()
            if isinstance(value, DeviceBuffer):
                return value.download(self._stream)
            return np.asarray(value)

    def close(self) -> None:
        """Free the device buffers, contexts, engines and the stream (idempotent); waits for a
        call in progress."""
        lock = getattr(self, "_lock", None)  # __init__ may have failed before it was set
        with lock or contextlib.nullcontext():
            self._close()

    def _close(self) -> None:
        for buf in getattr(self, "_buffers", {}).values():
            buf.free()
        self._buffers = {}
        for attr in ("_enc_ctx", "_dec_ctx", "_encoder", "_decoder", "_runtime"):  # contexts first
            if hasattr(self, attr):
                delattr(self, attr)
        if getattr(self, "_stream", None) is not None:
            stream, self._stream = self._stream, None
            destroy_stream(stream)
        if getattr(self, "_pool", None) is not None:
            self._pool.close()  # embeddings still held are freed when dropped

    def __enter__(self) -> TensorRTSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorRTSegmenter(tensorrt={self.tensorrt_version}, device={self.device})"


__all__ = [
    "CudaError",
    "DeviceBuffer",
    "DevicePool",
    "EngineLoadError",
    "TensorRTSegmenter",
    "available",
    "bind",
    "open_device",
]
