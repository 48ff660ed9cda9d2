"""``segment()`` on NV12 camera frames (separate, pitched planes) and the overlap policy.

On the CPU the NV12 frame goes through the native twin (or numpy); the result must equal
``segment()`` on the frame converted to RGB by the BT.601 reference conversion. The CUDA path
(TensorRT segmenter) is exercised by the ``-m gpu`` tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge import SegZeroEdge, Status, pixels
from segzero_edge.backends import ReasonerOutput
from segzero_edge.image import NV12Frame
from segzero_edge.placement import default_overlap, split_threads
from tests.fixtures.wrapped import StandInReasoner

KITCHEN = Path(__file__).resolve().parents[1] / "examples" / "kitchen.png"
ANSWER = (
    '<think>t</think><answer>[{"bbox_2d": [100, 200, 400, 600], "point_2d": [250, 400]}, '
    '{"bbox_2d": [600, 50, 800, 250], "point_2d": [700, 150]}]</answer>'
)


class RecordingReasoner(StandInReasoner):
    """Answers two objects and keeps the 840 x 840 input it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        self.inputs.append(image.copy())
        return ReasonerOutput(ANSWER, False, 10, 5, {"decode": 0.0})

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def segmenter(tiny_bundle: Path) -> Iterator[object]:
    from segzero_edge.segmenter.auto import open_segmenter

    seg = open_segmenter(tiny_bundle, backend="onnxruntime", threads=1)
    yield seg
    seg.close()


def camera_frame() -> tuple[NV12Frame, np.ndarray]:
    """The kitchen photo as an NV12 camera buffer: luma and chroma in separate allocations
    with padded pitches (1024-byte aligned rows), plus its RGB by the reference conversion."""
    rgb = np.asarray(Image.open(KITCHEN).convert("RGB"))
    nv12 = pixels.rgb_to_nv12(rgb)
    h, w = rgb.shape[:2]
    y_buf = np.zeros((h, 1024), np.uint8)
    uv_buf = np.full((h // 2, 1024), 255, np.uint8)
    y_buf[:, :w], uv_buf[:, :w] = nv12[:h], nv12[h:]
    frame = NV12Frame(y_buf[:, :w], uv_buf[:, :w])
    return frame, pixels.nv12_to_rgb(nv12)


def test_segment_accepts_nv12_with_separate_pitched_planes(segmenter: object) -> None:
    frame, rgb = camera_frame()
    reasoner = RecordingReasoner()
    model = SegZeroEdge(reasoner, segmenter, family="multi-object", cache_frames=4)  # type: ignore[arg-type]
    a = model.segment(frame, "the knife")
    b = model.segment(rgb, "the knife")
    assert a.status is Status.OK and len(a.objects) == 2
    assert a.mask.shape == (480, 640) and a.mask.any()
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.objects == b.objects and a.iou_predictions == pytest.approx(
        b.iou_predictions, abs=1e-6
    )
    np.testing.assert_array_equal(reasoner.inputs[0], reasoner.inputs[1])
    assert not a.cuda_pixels and model.pixel_path == "cpu"
    again = model.segment(frame, "the cup")  # same camera frame: the SAM2 encoding is reused
    assert again.sam_cache_hit
    full = NV12Frame(frame.y, frame.uv, full_range=True)  # another range is another frame
    assert not model.segment(full, "the cup").sam_cache_hit


def test_device_nv12_without_cuda_is_a_clear_error(segmenter: object) -> None:
    model = SegZeroEdge(RecordingReasoner(), segmenter, family="multi-object")  # type: ignore[arg-type]
    dev = NV12Frame(0x7F000000, 0x7F100000, width=640, height=480, y_pitch=1024, uv_pitch=1024)
    with pytest.raises(ValueError, match="device memory needs the CUDA path"):
        model.segment(dev, "the knife")


@pytest.mark.parametrize(
    ("y", "uv", "names"),
    [(True, 0x7F100000, "y"), (0x7F000000, -4096, "uv"), (0, 0x7F100000, "y"),
     (0x7F000000, 2**64, "uv")],
)  # fmt: skip
def test_device_pointers_must_be_positive_ints(y: int, uv: int, names: str) -> None:
    """``True`` (an int to Python), a negative, NULL or over-64-bit address is refused when
    the frame is made, not handed to CUDA."""
    geometry = {"width": 640, "height": 480, "y_pitch": 1024, "uv_pitch": 1024}
    with pytest.raises(ValueError, match=f"NV12 device pointer {names} must be a positive int"):
        NV12Frame(y, uv, **geometry)
    with pytest.raises(ValueError, match="NV12 width must be an int"):
        NV12Frame(0x7F000000, 0x7F100000, **{**geometry, "width": 640.0})  # type: ignore[arg-type]
    assert NV12Frame(0x7F000000, 0x7F100000, **geometry).on_device


def test_overlap_policy_and_thread_split(segmenter: object, tiny_bundle: Path) -> None:
    assert default_overlap("cpu", "cpu") is False
    assert default_overlap("gpu", "cpu") and default_overlap("cpu", "gpu")
    assert split_threads(1) == (1, 1) and split_threads(2) == (1, 1)
    assert split_threads(8) == (6, 2) and split_threads(16) == (12, 4)
    seq = SegZeroEdge(RecordingReasoner(), segmenter, family="multi-object")  # type: ignore[arg-type]
    assert seq.overlap is False
    r = seq.segment(np.asarray(Image.open(KITCHEN).convert("RGB")), "the knife")
    assert not r.overlap
    # parts of a sequential call add up to no more than the call
    parts = ("sam_preprocess", "sam_encode", "preprocess", "reason", "sam_decode", "postprocess")
    assert sum(r.timings[k] for k in parts) <= r.timings["total"]
    with SegZeroEdge.from_bundle(tiny_bundle, overlap=True, n_threads=8) as m:
        assert m.overlap is True
        assert m.reasoner.n_threads == 6  # type: ignore[attr-defined]
        opts = m.segmenter._encoder.get_session_options()  # type: ignore[attr-defined]
        assert opts.intra_op_num_threads == 2


def test_cpu_reasoner_reads_the_gguf_instead_of_mapping_it(tiny_bundle: Path) -> None:
    """On the CPU llama.cpp repacks the quantized matrices: mapped, the file's pages would stay
    resident beside the copies, so the runtime reads the file there (``use_mmap=None``)."""
    from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner

    files = (tiny_bundle / "reasoner.gguf", tiny_bundle / "mmproj.gguf")
    for use_mmap, mapped in ((None, False), (True, True)):
        r = LlamaCppReasoner(*files, n_gpu_layers=0, n_threads=1, use_mmap=use_mmap, warmup=False)
        try:
            buffers = [s for _, s in r.load_log if "model buffer size" in s]
        finally:
            r.close()
        assert r.device_kind == "cpu" and buffers, r.load_log[-5:]
        assert any("CPU_Mapped" in s for s in buffers) is mapped, buffers
