"""TensorRT engines on one CUDA device, as the SAM2 segmenter and video memory run them.

- :class:`TrtEngine`: one engine file deserialized and checked against the tensors this
  project's graph has, with its one execution context: tensor shapes and dtypes, binding
  device addresses, input shapes, enqueueing.
- :class:`TrtEngines`: a backend's engines with what they share: the ``tensorrt.Runtime``, a
  non-blocking CUDA stream, device buffers, a :class:`~segzero_edge.platform.cuda.DevicePool`
  and a lock that serialises calls; ``close()`` frees them in order (contexts before engines
  before the runtime).

TensorRT 10 API (``set_tensor_address``, ``set_input_shape``, ``execute_async_v3``; older
TensorRT is refused, see :data:`segzero_edge.platform.trt.MIN_TENSORRT`). Subclassed by
:class:`~.tensorrt.TensorRTSegmenter` and :class:`~.memory_tensorrt.TensorRTMemory`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EngineLoadError
from ..platform.cuda import (
    CudaError,
    DeviceBuffer,
    DevicePool,
    check,
    create_stream,
    cudart,
    destroy_stream,
    set_device,
)
from ..platform.trt import import_tensorrt, tensorrt_logger

if TYPE_CHECKING:
    import tensorrt


def bind(ctx: tensorrt.IExecutionContext, name: str, ptr: int, what: str) -> None:
    """``ctx.set_tensor_address(name, ptr)``, or ``RuntimeError`` naming the tensor: TensorRT
    returns False (and only logs) for a name that is not an input or output of the engine or
    a misaligned address; unchecked, that surfaces later as "failed to enqueue"."""
    if not ctx.set_tensor_address(name, int(ptr)):
        raise RuntimeError(
            f"TensorRT {what} engine refused the address {int(ptr):#x} for tensor {name!r} "
            "(no such input or output, or a misaligned pointer)"
        )


def open_device(plans: Mapping[str, Path], device: int) -> None:
    """Check that every engine file of ``plans`` ({role: path}) exists, then make ``device``
    the current CUDA device. Raises ``FileNotFoundError`` naming the missing engine and how to
    build it, :class:`~segzero_edge.platform.cuda.CudaError` when CUDA refuses the device."""
    for role, path in plans.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"SAM2 {role} TensorRT engine not found: {path} "
                "(build it on this device: segzero-edge build-engines BUNDLE)"
            )
    set_device(device)


class TrtEngine:
    """One engine file and its execution context.

    ``what`` names it in errors ("encoder", "memory attention"); ``inputs`` / ``outputs`` are
    the tensors it must have, ``optional`` those it may have besides (the decoder's tracking
    outputs). Raises :class:`EngineLoadError` when TensorRT cannot deserialize the file, its
    tensors are not those, or no execution context can be made (out of memory).
    """

    def __init__(
        self,
        runtime: tensorrt.Runtime,
        path: Path,
        what: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        optional: Sequence[str] = (),
    ) -> None:
        self.what = what
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineLoadError(
                f"TensorRT {_trt_version()} cannot load {path}: built with another "
                "TensorRT version or GPU? Rebuild it here: "
                "segzero-edge build-engines BUNDLE --force"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if set(names) - set(optional) != set(inputs) | set(outputs):
            raise EngineLoadError(
                f"{path} is not a SAM2 {what} engine of this project: tensors {names}; "
                f"expected inputs {tuple(inputs)} and outputs {tuple(outputs)}"
            )
        self.tensor_names = frozenset(names)
        """Every input and output of the engine."""
        self._engine: tensorrt.ICudaEngine | None = engine
        context = engine.create_execution_context()
        if context is None:
            raise EngineLoadError("TensorRT could not create an execution context (out of memory?)")
        self._context: tensorrt.IExecutionContext | None = context

    @property
    def engine(self) -> tensorrt.ICudaEngine:
        if self._engine is None:
            raise RuntimeError(f"the TensorRT {self.what} engine has been released")
        return self._engine

    @property
    def context(self) -> tensorrt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"the TensorRT {self.what} engine has been released")
        return self._context

    def dtype(self, name: str) -> np.dtype[Any]:
        """The numpy dtype of tensor ``name``."""
        import tensorrt as trt

        nptype = trt.nptype(self.engine.get_tensor_dtype(name))  # type: ignore[no-untyped-call]
        dtype: np.dtype[Any] = np.dtype(nptype)
        return dtype

    def shape(self, name: str, fixed: Mapping[int, int] | None = None) -> tuple[int, ...]:
        """The engine's shape of ``name``, dimension ``d`` replaced by ``fixed[d]`` (e.g. a
        dynamic axis at its profile maximum, the largest buffer a call needs).
        ``ValueError`` when a dimension stays dynamic."""
        shape = list(self.dims(name))
        for axis, value in (fixed or {}).items():
            shape[axis] = int(value)
        if any(d < 0 for d in shape):
            raise ValueError(f"engine tensor {name} has an unexpected dynamic shape {shape}")
        return tuple(shape)

    def dims(self, name: str) -> tuple[int, ...]:
        """The engine's shape of ``name`` as built, -1 for a dynamic dimension."""
        dims = self.engine.get_tensor_shape(name)
        return tuple(int(dims[i]) for i in range(len(dims)))

    def profile_max(self, name: str) -> tuple[int, ...]:
        """The maximum shape of input ``name`` in optimisation profile 0."""
        dims = self.engine.get_tensor_profile_shape(name, 0)[2]
        return tuple(int(dims[i]) for i in range(len(dims)))

    def bind(self, name: str, ptr: int) -> None:
        """Bind tensor ``name`` to device address ``ptr`` (see :func:`bind`)."""
        bind(self.context, name, ptr, self.what)

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        """The runtime shape of a dynamic input; ``ValueError`` when outside the profile."""
        if not self.context.set_input_shape(name, shape):
            raise ValueError(f"TensorRT rejected input shape {shape} for {name}")

    def enqueue(self, stream: int) -> None:
        """Queue the engine on ``stream`` with the bound addresses (``execute_async_v3``)."""
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError(f"TensorRT {self.what} failed to enqueue (see the TensorRT log)")

    def release(self) -> None:
        """Drop the context, then the engine (idempotent)."""
        self._context = None
        self._engine = None


def _trt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


class TrtEngines:
    """The engines of one backend on CUDA device ``device``, and what they share.

    Subclasses load their engines in :meth:`_open` (called once the runtime, stream and pool
    exist) with :meth:`_load`; if it raises, everything made so far is freed and the error
    propagates. Calls are serialised by ``_lock`` (re-entrant); ``close()`` waits for a call
    in progress, and later calls raise ``RuntimeError``.
    """

    def __init__(self, plans: Mapping[str, Path], device: int) -> None:
        self.device = device
        self._lock = threading.RLock()  # one call at a time; close() waits for it
        self._buffers: dict[str, DeviceBuffer] = {}
        self._engines: list[TrtEngine] = []
        self._stream: int | None = None
        self._runtime: tensorrt.Runtime | None = None
        self._pool = DevicePool()
        trt = import_tensorrt()  # a clear TensorRTUnavailable when missing or too old
        self.tensorrt_version = str(trt.__version__)
        try:
            open_device(plans, device)
            self._runtime = trt.Runtime(tensorrt_logger())
            self._stream = create_stream()
            self._open(plans)
        except BaseException:
            self._close()
            raise

    def _open(self, plans: Mapping[str, Path]) -> None:
        raise NotImplementedError

    def _load(
        self,
        path: Path,
        what: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        optional: Sequence[str] = (),
    ) -> TrtEngine:
        assert self._runtime is not None
        engine = TrtEngine(self._runtime, path, what, inputs, outputs, optional)
        self._engines.append(engine)
        return engine

    @property
    def pool(self) -> DevicePool:
        """Where pooled outputs' device memory comes from (and returns to)."""
        return self._pool

    @property
    def stream(self) -> int:
        """The CUDA stream (as an int handle) all work of this object is queued on; makes
        :attr:`device` current. ``RuntimeError`` once closed."""
        return self._require_open()

    def _require_open(self) -> int:
        """The stream, after making :attr:`device` current (the current device is per host
        thread); ``RuntimeError`` once closed."""
        stream = self._open_stream()
        set_device(self.device)
        return stream

    def _open_stream(self) -> int:
        if self._stream is None:
            raise RuntimeError(f"this {type(self).__name__} has been closed")
        return self._stream

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> DeviceBuffer:
        """The device buffer kept under ``key``, allocated on first use."""
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = DeviceBuffer(shape, dtype)
        return buf

    def _device_ptr(self, engine: TrtEngine, name: str, value: Any, shape: tuple[int, ...]) -> int:
        """Device address of an input ``name`` of ``shape``: a :class:`DeviceBuffer` read in
        place, or a host array copied into a buffer kept for it (one per engine and name).
        ``ValueError`` when the shape differs (or the buffer was freed)."""
        if isinstance(value, DeviceBuffer):
            if value.shape != shape or value.ptr == 0:
                raise ValueError(f"{name} is {value!r}, the {engine.what} engine wants {shape}")
            return value.ptr
        host = np.asarray(value)
        if tuple(host.shape) != shape:
            raise ValueError(f"{name} has shape {host.shape}, expected {shape}")
        buf = self._buffer(f"host:{engine.what}:{name}", shape, engine.dtype(name))
        buf.upload(host, self._open_stream())
        return buf.ptr

    def close(self) -> None:
        """Free the device buffers, contexts, engines and the stream (idempotent); waits for a
        call in progress."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        for engine in self._engines:  # contexts first, then engines
            engine.release()
        self._engines = []
        self._runtime = None
        if self._stream is not None:
            stream, self._stream = self._stream, None
            destroy_stream(stream)
        self._pool.close()  # pooled outputs still held are freed when dropped


__all__ = [
    "CudaError",
    "EngineLoadError",
    "TrtEngine",
    "TrtEngines",
    "bind",
    "check",
    "cudart",
    "open_device",
]
