"""Device memory and streams of the TensorRT backends (``segzero_edge.platform.cuda``), on a
stand-in for cuda-python's runtime (no CUDA driver can run here; ``tests/fixtures/cuda.py``):
a failed ``cudaMalloc`` leaves nothing behind, the pool makes steady-state frames free of
``cudaMalloc`` / ``cudaFree``, streams are non-blocking."""

from __future__ import annotations

import gc
import sys
from collections import deque
from typing import Any

import numpy as np
import pytest

from segzero_edge.platform.cuda import (
    CudaError,
    DeviceBuffer,
    DevicePool,
    create_stream,
    destroy_stream,
)
from tests.fixtures.cuda import FakeCudart

pytestmark = pytest.mark.runtime

# the SAM2 encoder's three outputs (float32): 4 + 8 + 4 = 16 MiB per encoded frame
FEATURES = {
    "image_embed": (1, 256, 64, 64),
    "high_res_feats_0": (1, 32, 256, 256),
    "high_res_feats_1": (1, 64, 128, 128),
}
PIX_FEAT_WITH_MEM = (1, 256, 64, 64)  # the memory attention's output per object: 4 MiB


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Exceptions raised in ``__del__`` (Python only prints them) are collected here."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_failed_malloc_raises_a_clear_error_and_del_is_silent(
    fake_cudart: FakeCudart, unraisable: list[Any]
) -> None:
    fake_cudart.fail_malloc_over = 1 << 20
    with pytest.raises(
        CudaError, match=r"cudaMalloc of 8\.0 MiB failed: cudaErrorMemoryAllocation"
    ):
        DeviceBuffer(FEATURES["high_res_feats_0"], np.float32)
    gc.collect()  # the half-built buffer is collected: its __del__ must not raise
    assert unraisable == []
    assert fake_cudart.count("cudaFree") == 0  # nothing was allocated, nothing is freed
    pool = DevicePool()
    with pytest.raises(CudaError, match=r"cudaMalloc of 4\.0 MiB"):
        pool.buffer(PIX_FEAT_WITH_MEM, np.float32)
    gc.collect()
    assert unraisable == [] and pool.mallocs == 0 and pool.idle_bytes == 0


def test_upload_download_round_trip_and_size_checks(fake_cudart: FakeCudart) -> None:
    stream = create_stream()
    buf = DeviceBuffer((2, 3, 4), np.float16)
    src = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    buf.upload(src, stream)  # cast to the buffer's dtype
    back = buf.download(stream)
    assert back.dtype == np.float16 and np.array_equal(back, src.astype(np.float16))
    assert np.array_equal(buf.download(stream, (1, 3, 4)), back[:1])  # a smaller view
    with pytest.raises(ValueError, match="do not fit"):
        buf.upload(np.zeros((3, 3, 4), np.float16), stream)
    with pytest.raises(ValueError, match="does not fit"):
        buf.download(stream, (3, 3, 4))
    ptr = buf.ptr
    buf.free()
    buf.free()  # idempotent
    assert buf.ptr == 0 and ("cudaFree", (ptr,)) in fake_cudart.calls
    assert fake_cudart.count("cudaFree") == 1


def test_streams_are_non_blocking(fake_cudart: FakeCudart) -> None:
    stream = create_stream()
    assert fake_cudart.streams[stream] == fake_cudart.cudaStreamNonBlocking
    assert fake_cudart.count("cudaStreamCreate") == 0
    destroy_stream(stream)
    assert ("cudaStreamDestroy", (stream,)) in fake_cudart.calls


def test_steady_state_frames_make_no_malloc_or_free(fake_cudart: FakeCudart) -> None:
    """What the segmenter and the memory attention do per frame: encode a frame into three
    pooled feature buffers kept in a 4-frame cache, and one 4 MiB output per tracked object.
    After the first frames fill the cache, the CUDA allocator is never called again."""
    pool = DevicePool()
    cache: deque[dict[str, DeviceBuffer]] = deque(maxlen=4)
    counts = []
    for frame in range(12):
        cache.append({k: pool.buffer(shape, np.float32) for k, shape in FEATURES.items()})
        for _obj in range(3):  # three tracked objects: attend -> decode -> dropped
            out = pool.buffer(PIX_FEAT_WITH_MEM, np.float32)
            out.upload(np.full(PIX_FEAT_WITH_MEM, frame, np.float32), stream=0)
            del out
        counts.append((fake_cudart.count("cudaMalloc"), fake_cudart.count("cudaFree")))
    # frames 0..3 fill the cache, frame 4 allocates the one in flight, then nothing changes
    assert counts[4:] == [counts[4]] * 8, counts
    mallocs = counts[-1][0]
    assert counts[-1][1] == 0 and pool.mallocs == mallocs and pool.frees == 0
    assert 3 * 5 <= mallocs <= 3 * 5 + 1  # 5 frames of features (+ the 4 MiB output)
    cache.clear()
    allocated = sum(args[0] for name, args in fake_cudart.calls if name == "cudaMalloc")
    assert pool.idle_bytes == allocated  # everything came back, nothing was freed
    pool.close()
    assert fake_cudart.count("cudaFree") == mallocs and pool.idle_bytes == 0
    assert fake_cudart.memory == {}  # every allocation was freed exactly once


def test_pool_bounds_its_idle_memory_and_frees_after_close(fake_cudart: FakeCudart) -> None:
    pool = DevicePool(max_idle_bytes=5 << 20)
    a = pool.buffer(PIX_FEAT_WITH_MEM, np.float32)  # 4 MiB
    b = pool.buffer(PIX_FEAT_WITH_MEM, np.float32)
    a.free()  # kept: 4 MiB idle
    b.free()  # over the 5 MiB bound: cudaFree
    assert pool.idle_bytes == 4 << 20 and fake_cudart.count("cudaFree") == 1
    c = pool.buffer(PIX_FEAT_WITH_MEM, np.float32)  # the idle one, no cudaMalloc
    assert fake_cudart.count("cudaMalloc") == 2 and pool.idle_bytes == 0
    pool.close()
    c.free()  # the pool is closed: freed at once
    assert fake_cudart.count("cudaFree") == 2 and fake_cudart.memory == {}
    with pytest.raises(RuntimeError, match="closed"):
        pool.buffer(PIX_FEAT_WITH_MEM, np.float32)
    with pytest.raises(ValueError, match="max_idle_bytes"):
        DevicePool(max_idle_bytes=-1)


def test_a_buffer_collected_while_the_pool_is_busy_goes_back(fake_cudart: FakeCudart) -> None:
    """A buffer may be collected on any thread, even inside a pool call on that thread."""
    pool = DevicePool()
    buf = pool.buffer((16,), np.uint8)
    with pool._lock:  # the re-entrant lock a collection may hit mid-call
        buf.free()
    assert pool.idle_bytes == 16 and fake_cudart.count("cudaFree") == 0
