"""TensorRT SAM2 tracking on a GPU: the memory engines built from the tiny SAM2.1 export
against onnxruntime on CPU, and the tracker on TensorRT against the tracker on onnxruntime.
Run with ``pytest -m gpu`` on a Jetson (or any host with TensorRT 10).

FP16 tolerances (normalisation in FP32): memory attention / encoder outputs cosine
similarity >= 0.999; tracked masks IoU >= 0.95 per frame, object score within 0.05.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.tensorrt import requires_tensorrt
from tests.fixtures.tracking import SHORT_CLIP, OurTrack, mask_iou, synthetic_clip, track_clip

pytestmark = [pytest.mark.gpu, requires_tensorrt]

COSINE_MIN = 0.999
MASK_IOU_MIN = 0.95
SCORE_ATOL = 0.05


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="module")
def trt_track_bundle(sam2_onnx: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A folder with the four shipped graphs and engines built for this GPU."""
    from segzero_export.engines import build_engines

    root = tmp_path_factory.mktemp("trt_track_bundle")
    for key, path in sam2_onnx["slim"].items():
        shutil.copy(path, root / f"sam2_{key}.onnx")
    t0 = time.perf_counter()
    result = build_engines(root, progress=False)
    print(f"TensorRT engines built in {time.perf_counter() - t0:.1f} s: {result.seconds}")
    assert result.memory_attention is not None and result.memory_encoder is not None
    return root, result


@pytest.fixture(scope="module")
def trt_backends(trt_track_bundle: Any) -> Any:
    from segzero_edge.bundle_memory import open_memory
    from segzero_edge.segmenter.tensorrt import TensorRTSegmenter

    root, result = trt_track_bundle
    seg = TensorRTSegmenter(*result.plans)
    memory = open_memory(root, "tensorrt")
    yield seg, memory
    memory.close()
    seg.close()


def test_memory_engines_found(trt_track_bundle: Any) -> None:
    from segzero_edge.engine_cache import find_memory_engines

    root, result = trt_track_bundle
    assert find_memory_engines(root) == (result.memory_attention, result.memory_encoder)
    assert {"sam2_memory_attention", "sam2_memory_encoder"} <= set(result.built)


def test_memory_engines_match_onnxruntime(
    trt_backends: Any, ort_segmenter: Any, ort_memory: Any
) -> None:
    from segzero_edge.backends import ImageEmbedding
    from segzero_edge.pixels import preprocess_sam

    _seg, memory = trt_backends
    emb = ort_segmenter.encode(preprocess_sam(synthetic_clip(1)[0]))
    rng = np.random.default_rng(0)
    for n, m in ((1, 1), (7, 16)):
        mem = rng.normal(size=(n, 64, 64, 64)).astype(np.float32)
        tpos = np.asarray([0, *range(7 - n + 1, 7)][:n], dtype=np.float32)
        ptrs = rng.normal(size=(m, 256)).astype(np.float32)
        ptr_tpos = (np.arange(m) / 15).astype(np.float32)
        got = memory.attend(emb, mem, tpos, ptrs, ptr_tpos).download(memory.stream)
        ref = ort_memory.attend(emb, mem, tpos, ptrs, ptr_tpos)
        c = cosine(got, ref)
        print(f"memory attention N={n} M={m}: cosine {c:.6f}")
        assert c >= COSINE_MIN
    logits = (rng.normal(size=(1, 1, 256, 256)) * 8).astype(np.float32)
    for from_pts, score in ((True, 1.0), (False, -1.0)):
        host = ImageEmbedding(emb.image_embed, emb.high_res_feats_0, emb.high_res_feats_1)
        got = memory.encode_memory(host, logits, np.array([[score]], np.float32), from_pts)
        ref = ort_memory.encode_memory(host, logits, np.array([[score]], np.float32), from_pts)
        c = cosine(got, ref)
        print(f"memory encoder from_pts={from_pts} score={score}: cosine {c:.6f}")
        assert c >= COSINE_MIN


def test_tracker_on_tensorrt_matches_onnxruntime(trt_backends: Any, short_track: OurTrack) -> None:
    seg, memory = trt_backends
    run = track_clip(seg, memory, synthetic_clip(SHORT_CLIP))
    for got, ref in zip(run.results, short_track.results, strict=True):
        iou = mask_iou(got.object_masks[0], ref.object_masks[0])
        d = abs(got.object_score_logits[0] - ref.object_score_logits[0])
        print(
            f"frame {got.frame_index}: IoU {iou:.4f}, score diff {d:.3f}, "
            f"update {got.timings['total'] * 1e3:.1f} ms"
        )
        assert iou >= MASK_IOU_MIN and d < SCORE_ATOL
    print(f"TensorRT tracking of {SHORT_CLIP} frames: {run.seconds:.2f} s")


def test_profile_limits(trt_backends: Any, ort_segmenter: Any) -> None:
    from segzero_edge.pixels import preprocess_sam

    _, memory = trt_backends
    emb = ort_segmenter.encode(preprocess_sam(synthetic_clip(1)[0]))
    with pytest.raises(ValueError, match="profile maximum"):
        memory.attend(
            emb,
            np.zeros((8, 64, 64, 64), np.float32),
            np.zeros(8, np.float32),
            np.zeros((1, 256), np.float32),
            np.zeros(1, np.float32),
        )


def test_closed_memory_refuses(trt_track_bundle: Any, tmp_path: Path) -> None:
    from segzero_edge.bundle_memory import open_memory

    root, _ = trt_track_bundle
    memory = open_memory(root, "tensorrt")
    memory.close()
    memory.close()
    with pytest.raises(RuntimeError, match="closed"):
        memory.encode_memory(None, np.zeros((1, 1, 256, 256), np.float32), np.zeros((1, 1)), True)
