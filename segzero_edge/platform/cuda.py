"""cuda-python's CUDA runtime API as the TensorRT backends and the CUDA kernels use it: the
one result check, device memory and streams.

- :func:`cudart`: the runtime module (``cuda.bindings.runtime``, or the pre-12.6
  ``cuda.cudart``); :func:`check` unpacks each call's ``(err, *values)`` result, raising
  :class:`CudaError` naming the call and the error.
- :class:`DeviceBuffer`: one tensor's allocation (shape, numpy dtype, device pointer), with
  host <-> device copies ordered on a stream.
- :class:`DevicePool`: allocations kept for reuse by size, so a steady stream of frames makes
  no ``cudaMalloc`` / ``cudaFree`` (``cudaFree`` synchronises the whole device, stalling the
  other streams: the reasoner's CUDA kernels, llama.cpp on the GPU).
- :func:`create_stream`: a non-blocking stream (``cudaStreamNonBlocking``): work on it does not
  wait for, nor hold up, work on the legacy default stream (stream 0) that other libraries in
  the process may use.

A buffer goes back to its pool when it is freed (or collected). Every call of the backends
that queues work on a pooled buffer synchronises its stream before it returns, so a buffer
that Python code can drop has no work in flight and the next user may overwrite it at once.
Upstream: the CUDA runtime API (``cudaMalloc``, ``cudaFree``, ``cudaMemcpyAsync``,
``cudaStreamCreateWithFlags``) as cuda-python exposes it (``cuda.bindings.runtime``: each call
returns ``(err, *values)``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from ..errors import CudaError

CUDA_PYTHON_HINT = "pip install 'cuda-python>=12.6,<13' on JetPack 6 (CUDA 12.6)"
"""How to install cuda-python: its major version must match the driver's CUDA (13.x needs a
CUDA 13 driver)."""


def cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or the pre-12.6 ``cuda.cudart``).

    Raises ``ImportError`` when cuda-python is not installed.
    """
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # type: ignore[no-redef,unused-ignore]
    return runtime


def cuda_error_name(rt: Any, err: Any) -> str:
    """``cudaErrorNoDevice``-style name of a runtime error code."""
    try:
        _, name = rt.cudaGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return str(err)


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` result, raising :class:`CudaError` on failure."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise CudaError(f"{what} failed: {cuda_error_name(rt, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"


def malloc(nbytes: int) -> int:
    """``cudaMalloc(nbytes)`` -> device pointer; :class:`CudaError` saying how much was asked
    (an 8 GB Orin Nano shares its memory with the CPU and runs out first)."""
    return int(check(cudart().cudaMalloc(nbytes), f"cudaMalloc of {_mib(nbytes)}"))


def free(ptr: int) -> None:
    """``cudaFree(ptr)``; errors are ignored (called while releasing, maybe at shutdown)."""
    with contextlib.suppress(Exception):
        cudart().cudaFree(ptr)


def create_stream() -> int:
    """A new non-blocking CUDA stream on the current device (its handle as an int)."""
    rt = cudart()
    stream = check(
        rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking),
        "cudaStreamCreateWithFlags(cudaStreamNonBlocking)",
    )
    return int(stream)


def destroy_stream(stream: int) -> None:
    """``cudaStreamDestroy`` (errors ignored: called while releasing)."""
    with contextlib.suppress(Exception):
        cudart().cudaStreamDestroy(stream)


def synchronize(stream: int) -> None:
    """Wait for the work queued on ``stream``; :class:`CudaError` when it failed."""
    check(cudart().cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def set_device(device: int) -> None:
    """``cudaSetDevice(device)`` (the current device is per host thread); :class:`CudaError`
    when CUDA refuses it."""
    check(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def copy_device_to_device(dst: int, src: int, nbytes: int, stream: int) -> None:
    """``cudaMemcpyAsync`` of ``nbytes`` from device pointer ``src`` to ``dst``, on ``stream``."""
    rt = cudart()
    check(
        rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync (device to device)",
    )


class DevicePool:
    """Device allocations kept for reuse, by exact size (a backend's tensors come in a few
    fixed sizes: the SAM2 features, the memory attention's output).

    :meth:`acquire` hands out an idle allocation of that size, else ``cudaMalloc`` s one;
    :meth:`release` keeps it while the idle ones total at most ``max_idle_bytes``, else
    ``cudaFree`` s it. After :meth:`close` (which frees the idle ones) released allocations are
    freed at once. ``mallocs`` / ``frees`` count the CUDA calls made. Thread-safe; a buffer may
    be collected on any thread.
    """

    def __init__(self, max_idle_bytes: int = 256 << 20) -> None:
        if max_idle_bytes < 0:
            raise ValueError(f"max_idle_bytes must be >= 0, got {max_idle_bytes}")
        self.max_idle_bytes = int(max_idle_bytes)
        self.mallocs = 0
        self.frees = 0
        self._idle: dict[int, list[int]] = {}
        self._idle_bytes = 0
        self._closed = False
        self._lock = threading.RLock()  # re-entrant: a collected buffer may release mid-call

    @property
    def idle_bytes(self) -> int:
        """Bytes held for reuse."""
        return self._idle_bytes

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> DeviceBuffer:
        """A :class:`DeviceBuffer` whose allocation comes from (and returns to) this pool."""
        return DeviceBuffer(shape, dtype, pool=self)

    def acquire(self, nbytes: int) -> int:
        """A device pointer to ``nbytes`` bytes: an idle allocation of that size, or a new one.
        Raises :class:`CudaError` when ``cudaMalloc`` fails (nothing is held then)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this DevicePool has been closed")
            stack = self._idle.get(nbytes)
            if stack:
                self._idle_bytes -= nbytes
                return stack.pop()
        ptr = malloc(nbytes)
        with self._lock:
            self.mallocs += 1
        return ptr

    def release(self, ptr: int, nbytes: int) -> None:
        """Take back an allocation of ``nbytes`` from :meth:`acquire` (no work may be queued on
        it any more)."""
        with self._lock:
            if not self._closed and self._idle_bytes + nbytes <= self.max_idle_bytes:
                self._idle.setdefault(nbytes, []).append(ptr)
                self._idle_bytes += nbytes
                return
            self.frees += 1
        free(ptr)

    def close(self) -> None:
        """Free the idle allocations; later releases free at once (idempotent)."""
        with self._lock:
            self._closed = True
            idle = [ptr for stack in self._idle.values() for ptr in stack]
            self._idle, self._idle_bytes = {}, 0
            self.frees += len(idle)
        for ptr in idle:
            free(ptr)

    def __repr__(self) -> str:
        return (
            f"DevicePool(idle={_mib(self._idle_bytes)}, mallocs={self.mallocs}, frees={self.frees})"
        )


class DeviceBuffer:
    """One tensor in device memory: ``shape``, numpy ``dtype``, ``nbytes`` and ``ptr``.

    Allocated by ``cudaMalloc`` or taken from ``pool``; freed by :meth:`free` or when
    collected (back to the pool when it has one). A failed allocation raises
    :class:`CudaError` and leaves nothing to free.
    """

    ptr: int = 0  # also for an instance whose allocation failed: __del__ then frees nothing
    _pool: DevicePool | None = None
    _size: int = 0

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | type,
        *,
        pool: DevicePool | None = None,
    ) -> None:
        self.shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in self.shape):
            raise ValueError(f"a device buffer cannot have negative dimensions: {self.shape}")
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        size = max(self.nbytes, 1)
        self.ptr = pool.acquire(size) if pool is not None else malloc(size)
        self._pool, self._size = pool, size

    def upload(self, array: np.ndarray, stream: int) -> None:
        """Copy ``array`` (cast to this buffer's dtype) onto the device, ordered on ``stream``.

        From pageable host memory the call returns once the data is staged, so ``array`` may
        be released at once; the copy completes before later work on ``stream``.
        """
        host = np.ascontiguousarray(array, dtype=self.dtype)
        if host.nbytes > self.nbytes:
            raise ValueError(f"{host.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(
            rt.cudaMemcpyAsync(self.ptr, host.ctypes.data, host.nbytes, kind, stream),
            "cudaMemcpyAsync (host to device)",
        )

    def download(self, stream: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A host copy after the work queued on ``stream`` (``shape`` may be smaller than the
        allocation, e.g. fewer points); synchronises ``stream``."""
        out = np.empty(shape or self.shape, dtype=self.dtype)
        if out.nbytes > self.nbytes:
            raise ValueError(f"{out.shape} does not fit a {self.nbytes}-byte device buffer")
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(
            rt.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, kind, stream),
            "cudaMemcpyAsync (device to host)",
        )
        synchronize(stream)
        return out

    def free(self) -> None:
        """Give the allocation back (to the pool, else ``cudaFree``); idempotent."""
        ptr, self.ptr = self.ptr, 0
        if not ptr:
            return
        if self._pool is not None:
            with contextlib.suppress(Exception):  # interpreter shutdown
                self._pool.release(ptr, self._size)
        else:
            free(ptr)

    def __del__(self) -> None:
        self.free()

    def __repr__(self) -> str:
        return f"DeviceBuffer(shape={self.shape}, dtype={self.dtype}, ptr={self.ptr:#x})"


__all__ = [
    "CUDA_PYTHON_HINT",
    "CudaError",
    "DeviceBuffer",
    "DevicePool",
    "check",
    "copy_device_to_device",
    "create_stream",
    "cuda_error_name",
    "cudart",
    "destroy_stream",
    "free",
    "malloc",
    "set_device",
    "synchronize",
]
