"""TensorRT SAM2 on a GPU: engines built from the tiny SAM2.1 export, compared with
onnxruntime on CPU. Run with ``pytest -m gpu`` on a Jetson (or any host with TensorRT 10).

FP16 tolerances (normalisation kept in FP32): features cosine similarity >= 0.999,
thresholded low-res masks IoU >= 0.98 (each of the 4 outputs), IoU-score abs diff < 0.05.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge.pixels import preprocess_sam
from segzero_edge.segmenter.prompts import prompt_arrays
from tests.fixtures.segmenter import case_prompts, synthetic_image
from tests.fixtures.tensorrt import requires_tensorrt
from tests.fixtures.wrapped import StandInReasoner

pytestmark = [pytest.mark.gpu, requires_tensorrt]

FEATURE_COSINE_MIN = 0.999
MASK_IOU_MIN = 0.98
IOU_SCORE_ATOL = 0.05


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="session")
def trt_bundle(sam2_onnx: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A bundle folder with the shipped (slim) ONNX graphs and engines built for this GPU."""
    from segzero_export.engines import build_engines

    root = tmp_path_factory.mktemp("trt_bundle")
    for key in ("encoder", "decoder"):
        shutil.copy(sam2_onnx["slim"][key], root / f"sam2_{key}.onnx")
    t0 = time.perf_counter()
    result = build_engines(root, progress=False)
    print(f"TensorRT engines built in {time.perf_counter() - t0:.1f} s: {result.seconds}")
    return root, result


@pytest.fixture(scope="module")
def trt_segmenter(trt_bundle: Any) -> Any:
    from segzero_edge.segmenter.tensorrt import TensorRTSegmenter

    _, result = trt_bundle
    seg = TensorRTSegmenter(*result.plans)
    yield seg
    seg.close()


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, np.ndarray]]:
    return [("640x480", synthetic_image(480, 640, 1)), ("500x333", synthetic_image(333, 500, 2))]


def test_engines_written_found_and_kept(trt_bundle: Any) -> None:
    from segzero_edge.engine_cache import find_engines
    from segzero_export.engines import build_engines

    root, result = trt_bundle
    assert set(result.built) == {"sam2_encoder", "sam2_decoder"}
    assert find_engines(root) == result.plans
    meta = json.loads((result.directory / "engines.json").read_text())
    assert meta["fingerprint"] == result.directory.name == result.fingerprint
    assert meta["engines"]["sam2_decoder"]["fp32_layers_pinned"] > 0
    assert (result.directory / "timing.cache").stat().st_size > 0
    again = build_engines(root, progress=False)
    assert again.built == {}, "current engines must not be rebuilt"


def test_auto_backend_picks_tensorrt(trt_bundle: Any) -> None:
    from segzero_edge.segmenter.auto import open_segmenter

    root, _ = trt_bundle
    seg = open_segmenter(root, backend="auto")
    try:
        assert seg.name == "tensorrt"
    finally:
        seg.close()


def test_parity_with_onnxruntime(trt_segmenter: Any, ort_segmenter: Any, cases: list) -> None:
    worst = {"cos": 1.0, "mask_iou": 1.0, "iou_diff": 0.0, "logit_diff": 0.0}
    for name, image in cases:
        sam_in = preprocess_sam(image)
        t0 = time.perf_counter()
        emb = trt_segmenter.encode(sam_in)
        t_enc = time.perf_counter() - t0
        ref = ort_segmenter.encode(sam_in)
        for feat in ("image_embed", "high_res_feats_0", "high_res_feats_1"):
            got = getattr(emb, feat).download(trt_segmenter.stream)
            c = cosine(got, getattr(ref, feat))
            worst["cos"] = min(worst["cos"], c)
            assert c >= FEATURE_COSINE_MIN, f"{name} {feat}: cosine {c:.5f}"
        hw = image.shape[:2]
        for p in case_prompts(*hw):
            coords, labels = prompt_arrays(p.box, p.points, hw, labels=p.labels)
            t0 = time.perf_counter()
            low, iou = trt_segmenter.decode(emb, coords, labels)
            t_dec = time.perf_counter() - t0
            ref_low, ref_iou = ort_segmenter.decode(ref, coords, labels)
            assert low.shape == (1, 4, 256, 256) and iou.shape == (1, 4)
            for k in range(4):
                m = mask_iou(low[0, k] > 0, ref_low[0, k] > 0)
                worst["mask_iou"] = min(worst["mask_iou"], m)
                assert m >= MASK_IOU_MIN, f"{name} mask {k}: IoU {m:.4f}"
            d = float(np.abs(iou - ref_iou).max())
            worst["iou_diff"] = max(worst["iou_diff"], d)
            worst["logit_diff"] = max(worst["logit_diff"], float(np.abs(low - ref_low).max()))
            assert d < IOU_SCORE_ATOL, f"{name}: IoU score diff {d:.4f}"
        print(f"[{name}] TensorRT encode {t_enc * 1e3:.1f} ms, last decode {t_dec * 1e3:.2f} ms")
    print(f"TensorRT FP16 vs onnxruntime CPU, worst: {worst}")


def test_decode_from_a_host_embedding(trt_segmenter: Any, ort_segmenter: Any, cases) -> None:
    """An onnxruntime (numpy) embedding is uploaded and decoded the same way."""
    _, image = cases[0]
    sam_in = preprocess_sam(image)
    host_emb = ort_segmenter.encode(sam_in)
    p = case_prompts(*image.shape[:2])[0]
    coords, labels = prompt_arrays(p.box, p.points, image.shape[:2], labels=p.labels)
    low_dev, iou_dev = trt_segmenter.decode(trt_segmenter.encode(sam_in), coords, labels)
    low_host, iou_host = trt_segmenter.decode(host_emb, coords, labels)
    m = mask_iou(low_dev[0] > 0, low_host[0] > 0)
    assert m >= MASK_IOU_MIN and float(np.abs(iou_dev - iou_host).max()) < IOU_SCORE_ATOL


def test_points_profile_limits(trt_segmenter: Any, cases) -> None:
    _, image = cases[0]
    emb = trt_segmenter.encode(preprocess_sam(image))
    assert trt_segmenter.max_points == 16
    rng = np.random.default_rng(0)
    for n in (1, 16):
        coords = (rng.random((1, n, 2)) * 1024).astype(np.float32)
        low, iou = trt_segmenter.decode(emb, coords, np.ones((1, n), np.float32))
        assert np.isfinite(low).all() and np.isfinite(iou).all()
    with pytest.raises(ValueError, match="profile maximum of 16"):
        trt_segmenter.decode(emb, np.zeros((1, 17, 2), np.float32), np.ones((1, 17), np.float32))


def test_batched_decode(trt_segmenter: Any, ort_segmenter: Any, cases) -> None:
    """B prompts in one engine call: each row as decoding that prompt alone (same engine:
    logits within FP16 rounding), and as onnxruntime's batched decode; 17 > the profile's 16
    prompts is split into two calls."""
    _, image = cases[0]
    hw = image.shape[:2]
    sam_in = preprocess_sam(image)
    emb, ref_emb = trt_segmenter.encode(sam_in), ort_segmenter.encode(sam_in)
    assert trt_segmenter.max_prompts == 16
    rng = np.random.default_rng(1)
    for b in (2, 5, 17):
        arrays = []
        for _ in range(b):
            x0, y0 = rng.uniform(0, 400), rng.uniform(0, 300)
            box = (x0, y0, x0 + 200, y0 + 150)
            arrays.append(prompt_arrays(box, [(x0 + 100, y0 + 75)], hw))
        coords = np.concatenate([a[0] for a in arrays])
        labels = np.concatenate([a[1] for a in arrays])
        low, iou = trt_segmenter.decode(emb, coords, labels)
        ref_low, ref_iou = ort_segmenter.decode(ref_emb, coords, labels)
        assert low.shape == (b, 4, 256, 256) and iou.shape == (b, 4)
        for row in range(b):
            one_low, one_iou = trt_segmenter.decode(emb, *arrays[row])
            for k in range(4):
                assert mask_iou(low[row, k] > 0, one_low[0, k] > 0) >= 0.999
                assert mask_iou(low[row, k] > 0, ref_low[row, k] > 0) >= MASK_IOU_MIN
            assert float(np.abs(iou[row] - one_iou[0]).max()) < 1e-2
            assert float(np.abs(iou[row] - ref_iou[row]).max()) < IOU_SCORE_ATOL


def test_closed_segmenter_refuses(trt_bundle: Any) -> None:
    from segzero_edge.segmenter.tensorrt import TensorRTSegmenter

    seg = TensorRTSegmenter(*trt_bundle[1].plans)
    seg.close()
    seg.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        seg.encode(np.zeros((1, 3, 1024, 1024), np.float32))


def test_corrupt_plan_is_a_clear_error(tmp_path: Path, trt_bundle: Any) -> None:
    from segzero_edge.segmenter.tensorrt import TensorRTSegmenter

    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"not an engine")
    with pytest.raises(RuntimeError, match="cannot load"):
        TensorRTSegmenter(bad, trt_bundle[1].decoder)


def test_encode_from_the_cuda_preprocessing_kernel(trt_segmenter: Any, cases) -> None:
    """Native CUDA pre-processing writes the encoder input in place: same features."""
    from segzero_edge import native
    from segzero_edge.segmenter.tensorrt import DeviceBuffer

    if not native.cuda_available():
        pytest.skip("native CUDA kernels not built")
    _, image = cases[0]
    h, w = image.shape[:2]
    src = DeviceBuffer(image.shape, np.uint8)
    src.upload(image, trt_segmenter.stream)
    native.preprocess_cuda(
        src.ptr, h, w, w * 3, "rgb", trt_segmenter.image_buffer.ptr, None,
        stream=trt_segmenter.stream,
    )  # fmt: skip
    on_device = trt_segmenter.encode_loaded()
    via_host = trt_segmenter.encode(preprocess_sam(image))
    for feat in ("image_embed", "high_res_feats_0", "high_res_feats_1"):
        c = cosine(
            getattr(on_device, feat).download(trt_segmenter.stream),
            getattr(via_host, feat).download(trt_segmenter.stream),
        )
        assert c >= FEATURE_COSINE_MIN, f"{feat}: cosine {c:.5f}"
    src.free()


def test_close_waits_for_an_encode_and_later_calls_are_refused(trt_bundle: Any) -> None:
    """Issue 14: close() on another thread while encode() runs waits for it (no freed device
    buffers under a running engine); later calls raise a clear RuntimeError."""
    import threading

    from segzero_edge.segmenter.tensorrt import TensorRTSegmenter

    _, result = trt_bundle
    seg = TensorRTSegmenter(*result.plans)
    image = preprocess_sam(synthetic_image(480, 640, 3))
    out: dict[str, Any] = {}

    def encode() -> None:
        try:
            out["emb"] = seg.encode(image)
        except BaseException as e:  # pragma: no cover - reported below
            out["error"] = e

    worker = threading.Thread(target=encode)
    worker.start()
    while seg._lock.acquire(blocking=False):  # until the worker holds the segmenter
        seg._lock.release()
        if out:
            break
        time.sleep(0.0005)
    seg.close()
    worker.join(60)
    assert "error" not in out, out
    assert out["emb"].image_embed.shape == (1, 256, 64, 64)
    with pytest.raises(RuntimeError, match="TensorRTSegmenter has been closed"):
        seg.encode(image)
    with pytest.raises(RuntimeError, match="TensorRTSegmenter has been closed"):
        seg.decode(out["emb"], np.zeros((1, 1, 2), np.float32), np.ones((1, 1), np.float32))


class _Answer(StandInReasoner):
    """A reasoner that names two objects (the pipeline's object loop on the GPU)."""

    name = "scripted"

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def generate(self, image: np.ndarray, prompt: str, *, frame_key: str | None = None) -> Any:
        from segzero_edge.backends import ReasonerOutput

        self.inputs.append(image.copy())
        text = (
            '<think>t</think><answer>[{"bbox_2d": [100, 200, 400, 600], "point_2d": [250, 400]},'
            ' {"bbox_2d": [600, 50, 800, 250], "point_2d": [700, 150]}]</answer>'
        )
        return ReasonerOutput(text, False, 10, 5, {"decode": 0.0})

    def close(self) -> None:
        pass


def test_segment_uses_the_cuda_kernels_beside_tensorrt(
    trt_segmenter: Any, cases, native_cuda_lib: Path
) -> None:
    """segment() on a TensorRT segmenter: pre/post-processing on the GPU; same mask and same
    reasoner input as the CPU twin path on the same engines (masks IoU >= 0.99)."""
    from segzero_edge import SegZeroEdge
    from segzero_edge.image import NV12Frame
    from segzero_edge.pixels import nv12_to_rgb, rgb_to_nv12
    from segzero_edge.segmenter.tensorrt import DeviceBuffer

    _, image = cases[0]
    gpu_answer, cpu_answer = _Answer(), _Answer()
    gpu = SegZeroEdge(gpu_answer, trt_segmenter, family="multi-object", cache_frames=0)
    cpu = SegZeroEdge(cpu_answer, trt_segmenter, family="multi-object", cache_frames=0)
    cpu._pixels.cuda = None  # the CPU twin on the same engines
    assert gpu.pixel_path == "cuda" and gpu.overlap is True
    a = gpu.segment(image, "the knife")
    b = cpu.segment(image, "the knife")
    assert a.cuda_pixels and not b.cuda_pixels
    np.testing.assert_array_equal(gpu_answer.inputs[0], cpu_answer.inputs[0])
    assert mask_iou(a.mask, b.mask) >= 0.99 and a.mask.any()
    # NV12 in device memory, luma and chroma in separate pitched allocations
    h, w = image.shape[:2]
    nv12 = rgb_to_nv12(image)
    pitch = (w + 255) // 256 * 256
    y_host = np.zeros((h, pitch), np.uint8)
    uv_host = np.zeros((h // 2, pitch), np.uint8)
    y_host[:, :w], uv_host[:, :w] = nv12[:h], nv12[h:]
    y_dev, uv_dev = DeviceBuffer(y_host.shape, np.uint8), DeviceBuffer(uv_host.shape, np.uint8)
    y_dev.upload(y_host, trt_segmenter.stream)
    uv_dev.upload(uv_host, trt_segmenter.stream)
    frame = NV12Frame(y_dev.ptr, uv_dev.ptr, width=w, height=h, y_pitch=pitch, uv_pitch=pitch)
    c = gpu.segment(frame, "the knife")
    d = cpu.segment(nv12_to_rgb(nv12), "the knife")
    np.testing.assert_array_equal(gpu_answer.inputs[-1], cpu_answer.inputs[-1])
    assert mask_iou(c.mask, d.mask) >= 0.99
    y_dev.free()
    uv_dev.free()
