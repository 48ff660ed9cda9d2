"""The pipeline's CUDA pixel path (:class:`segzero_edge.cuda_pixels.CudaPixels`) on a real GPU,
without TensorRT: a segmenter double owning real device buffers (cuda-python) stands where the
TensorRT segmenter would. Its SAM2 input, reasoner input and mask must equal the CPU twin's,
bit for bit, on odd frame sizes, host NV12 with pitched planes, and pitch-linear NV12 in device
memory. ``pytest -m gpu``; ``scripts/gpu_check.sh`` runs it on a GPU host without TensorRT.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge import native, pixels
from segzero_edge.image import NV12Frame

pytestmark = pytest.mark.gpu


def rgb(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(h * 7919 + w)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 // max(h - 1, 1) + xx * 255 // max(w - 1, 1))[..., None] // 2
    return np.clip(base + rng.integers(-60, 61, (h, w, 3)), 0, 255).astype(np.uint8)


def blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    out = [
        rng.uniform(10, 80) - np.hypot(yy - rng.uniform(40, 216), xx - rng.uniform(40, 216))
        for _ in range(n)
    ]
    return np.stack(out).astype(np.float32)


class DeviceOnlySegmenter:
    """What CudaPixels reads of a TensorRT segmenter, on real device memory: the encoder input
    buffer (``encode_loaded`` returns what the kernel wrote there), a stream, the decoder's
    mask output ``[2, 4, 256, 256]``."""

    name = "tensorrt"
    backend = "tensorrt"
    device_kind = "gpu"
    device = 0
    threads = None

    def __init__(self, low_res: np.ndarray) -> None:
        from segzero_edge.platform.cuda import DeviceBuffer, create_stream

        self.max_prompts = int(low_res.shape[0])
        self.providers: list[str] = []
        self.stream = create_stream()
        self.image_buffer = DeviceBuffer((1, 3, 1024, 1024), np.float32)
        self.mask_buffer = DeviceBuffer(low_res.shape, np.float32)
        self.mask_buffer.upload(low_res, self.stream)

    def encode_loaded(self) -> np.ndarray:
        return self.image_buffer.download(self.stream)

    def decode_on_device(self, *args: Any) -> np.ndarray:
        raise AssertionError("the test fills mask_buffer itself")

    def encode(self, image: np.ndarray) -> Any:
        raise AssertionError("CudaPixels encodes from image_buffer")

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("CudaPixels reads mask_buffer")

    def close(self) -> None:
        from segzero_edge.platform.cuda import destroy_stream

        self.image_buffer.free()
        self.mask_buffer.free()
        destroy_stream(self.stream)


@pytest.fixture(scope="module")
def low_res() -> np.ndarray:
    return blobs(8, seed=3).reshape(2, 4, 256, 256)


@pytest.fixture
def cuda_pixels(native_cuda_lib: Path, low_res: np.ndarray) -> Iterator[object]:
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda-bindings) missing")
    from segzero_edge.cuda_pixels import CudaPixels

    assert native.cuda_available(), "CUDA build loaded but no device visible"
    seg = DeviceOnlySegmenter(low_res)
    px = CudaPixels(seg, max_objects=4)  # type: ignore[arg-type]  # what CudaPixels reads
    yield px
    px.close()
    seg.close()


def _check_frame(px: object, frame: np.ndarray | NV12Frame, cpu: tuple) -> None:
    sam = px.encode(frame)  # type: ignore[attr-defined]
    assert np.array_equal(sam, cpu[0]), "SAM2 input differs from the CPU twin"
    got = px.reasoner_input(frame)  # type: ignore[attr-defined]
    assert np.array_equal(got, cpu[1]), "reasoner input differs from the CPU twin"


@pytest.mark.parametrize("hw", [(3, 5), (333, 501), (1081, 1919)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_cuda_pixels_rgb_matches_the_cpu_twin(cuda_pixels: object, hw: tuple[int, int]) -> None:
    frame = rgb(*hw)
    _check_frame(cuda_pixels, frame, native.preprocess(frame, "rgb"))


@pytest.mark.parametrize("full_range", [False, True])
def test_cuda_pixels_nv12_pitched_planes_match_the_cpu_twin(
    cuda_pixels: object, full_range: bool
) -> None:
    """NV12 with luma and chroma in separate pitched buffers: from host memory (views of
    wider arrays) and from device memory (pitch-linear, as after NvBufSurfTransform)."""
    from segzero_edge.platform.cuda import DeviceBuffer, synchronize

    h, w, pitch = 478, 638, 1024
    nv12 = pixels.rgb_to_nv12(rgb(h, w), full_range=full_range)
    y_host = np.full((h, pitch), 7, np.uint8)
    uv_host = np.full((h // 2, pitch), 250, np.uint8)  # padding that must never be read
    y_host[:, :w], uv_host[:, :w] = nv12[:h], nv12[h:]
    fmt = "nv12_full" if full_range else "nv12"
    cpu = native.preprocess(nv12[:h], fmt, uv=nv12[h:])
    host = NV12Frame(y_host[:, :w], uv_host[:, :w], full_range=full_range)
    _check_frame(cuda_pixels, host, cpu)
    stream = cuda_pixels.segmenter.stream  # type: ignore[attr-defined]
    y_dev, uv_dev = DeviceBuffer(y_host.shape, np.uint8), DeviceBuffer(uv_host.shape, np.uint8)
    y_dev.upload(y_host, stream)
    uv_dev.upload(uv_host, stream)
    synchronize(stream)  # the frame is complete before any stream reads it (as a camera's)
    dev = NV12Frame(
        y_dev.ptr, uv_dev.ptr, width=w, height=h, y_pitch=pitch, uv_pitch=pitch,
        full_range=full_range,
    )  # fmt: skip
    try:
        _check_frame(cuda_pixels, dev, cpu)
    finally:
        y_dev.free()
        uv_dev.free()


@pytest.mark.parametrize("hw", [(1, 1), (333, 501)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_cuda_pixels_masks_match_the_cpu_twin(
    cuda_pixels: object, low_res: np.ndarray, hw: tuple[int, int]
) -> None:
    chosen = [(0, 1), (1, 3), (1, 0)]  # (prompt row, multimask plane) per object
    for index, (row, plane) in enumerate(chosen):
        cuda_pixels.keep(index, row, plane)  # type: ignore[attr-defined]
    mask, area, box = cuda_pixels.masks(len(chosen), hw)  # type: ignore[attr-defined]
    cpu = native.postprocess_masks(np.stack([low_res[r, p] for r, p in chosen]), hw)
    assert np.array_equal(mask, cpu[0]) and (area, box) == cpu[1:]
    # each object's own mask, from the same kernel one slot at a time: the union is their OR
    per_object = cuda_pixels.object_masks(len(chosen), hw)  # type: ignore[attr-defined]
    assert per_object.shape == (len(chosen), *hw) and per_object.dtype == bool
    for k, (row, plane) in enumerate(chosen):
        assert np.array_equal(per_object[k], native.postprocess_masks(low_res[row, plane], hw)[0])
    assert np.array_equal(per_object.any(axis=0), mask)
