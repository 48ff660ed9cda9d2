"""The CUDA pixel path's lock order: the reasoner-input kernel runs while the SAM2 encode of the
same frame is in progress (the pipeline's overlap), on a stream of its own, instead of waiting
for the encode behind the segmenter's lock.

No GPU here: the real :class:`~segzero_edge.pipeline.SegZeroEdge` and
:class:`~segzero_edge.cuda_pixels.CudaPixels` run on a stand-in CUDA runtime
(``tests/fixtures/cuda.py``), a stand-in for the kernel launch that records which stream and
when, and a TensorRT segmenter double whose encode takes 0.4 s.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from segzero_edge import SegZeroEdge, Status, native
from segzero_edge.backends import ImageEmbedding, ReasonerOutput
from segzero_edge.platform.cuda import DeviceBuffer, create_stream
from tests.fixtures.cuda import FakeCudart
from tests.fixtures.wrapped import StandInReasoner

pytestmark = pytest.mark.runtime

ENCODE_SECONDS = 0.4


class NoObjectsReasoner(StandInReasoner):
    name = "no-objects"
    device_kind = "gpu"

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        self.inputs.append(image)
        return ReasonerOutput("<think>t</think><answer>[]</answer>", False, 10, 5, {})

    def close(self) -> None:
        pass


class SlowEncodeSegmenter:
    """What the CUDA path reads of a TensorRT segmenter: its encoder input buffer, stream and
    mask buffer; ``encode_loaded`` takes :data:`ENCODE_SECONDS`."""

    name = "tensorrt"
    backend = "tensorrt"
    device_kind = "gpu"
    device = 0
    threads = None
    max_prompts = 16

    def __init__(self) -> None:
        self.providers: list[str] = []
        self.stream = create_stream()
        self.image_buffer = DeviceBuffer((1, 3, 1024, 1024), np.float16)
        self.mask_buffer = DeviceBuffer((1, 4, 256, 256), np.float32)
        self.encoding = threading.Event()
        self.spans: list[tuple[float, float]] = []

    def encode_loaded(self) -> ImageEmbedding:
        t0 = time.perf_counter()
        self.encoding.set()
        time.sleep(ENCODE_SECONDS)
        self.spans.append((t0, time.perf_counter()))
        z = np.zeros(1, np.float32)
        return ImageEmbedding(image_embed=z, high_res_feats_0=z, high_res_feats_1=z)

    def decode_on_device(self, *args: Any) -> np.ndarray:
        raise AssertionError("the answer has no objects: nothing to decode")

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        raise AssertionError("the CUDA path encodes from the kernel's buffer")

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the CUDA path decodes on the device")

    def close(self) -> None:
        self.image_buffer.free()
        self.mask_buffer.free()


def test_reasoner_input_runs_beside_the_encode_on_its_own_stream(
    fake_cudart: FakeCudart, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg = SlowEncodeSegmenter()
    launches: list[tuple[str, float, int]] = []

    def preprocess_cuda(
        src: int, h: int, w: int, stride: int, fmt: str, sam_ptr: Any, reasoner_ptr: Any,
        *, stream: int, **kw: Any,
    ) -> None:  # fmt: skip
        if reasoner_ptr is not None:
            assert seg.encoding.wait(5), "the encode never started"
        launches.append(("sam" if sam_ptr else "reasoner", time.perf_counter(), stream))

    monkeypatch.setattr(native, "available", lambda: (True, "stand-in"))
    monkeypatch.setattr(native, "cuda_available", lambda: True)
    monkeypatch.setattr(native, "preprocess_cuda", preprocess_cuda)
    reasoner = NoObjectsReasoner()
    model = SegZeroEdge(reasoner, seg, family="multi-object", overlap=True)  # type: ignore[arg-type]
    assert model.pixel_path == "cuda"
    try:
        frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        result = model.segment(frame, "the knife")
    finally:
        model.close()
    assert result.status is Status.NO_OBJECT and result.overlap
    assert result.cuda_pixels and len(reasoner.inputs) == 1
    (t_encode, t_encoded), *_ = seg.spans
    kinds = {kind: (t, stream) for kind, t, stream in launches}
    t_reasoner, reasoner_stream = kinds["reasoner"]
    # the reasoner-input kernel was launched while the encode was running, not after it
    assert t_encode <= t_reasoner < t_encoded, (t_encode, t_reasoner, t_encoded)
    assert kinds["sam"][1] == seg.stream  # the SAM2 input: on the segmenter's stream
    assert reasoner_stream != seg.stream  # the reasoner input: on a stream of its own
    assert fake_cudart.streams[reasoner_stream] == fake_cudart.cudaStreamNonBlocking
    assert ("cudaStreamDestroy", (reasoner_stream,)) in fake_cudart.calls  # closed with it
