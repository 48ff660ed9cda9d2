"""SegZeroEdge under threads, faults and hostile queries (issue 14), on the tiny bundle.

``close()`` waits for calls in progress, a failed SAM2 encoding is not cached, a Ctrl+C
reaches the caller, and random queries (special tokens, markers, surrogates, long CJK) give a
status or a documented ``ValueError``, never a ``BackendError``.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_edge import SegZeroEdge, Status
from segzero_edge.backends import ImageEmbedding, ReasonerOutput
from segzero_edge.bundle import open_backends
from segzero_edge.segmenter.onnxruntime import OrtSegmenter
from tests.fixtures.wrapped import StandInReasoner, WrappedSegmenter

ANSWER_NONE = "<think>nothing like that here</think><answer>[]</answer>"
ANSWER_ONE = (
    '<think>the knife</think><answer>[{"bbox_2d": [100,100,400,300], "point_2d": [250,200]}]'
    "</answer>"
)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ort(tiny_bundle: Path) -> Iterator[OrtSegmenter]:
    seg = OrtSegmenter(tiny_bundle / "sam2_encoder.onnx", tiny_bundle / "sam2_decoder.onnx")
    yield seg
    seg.close()


PARSED = (Status.OK, Status.NO_OBJECT)
"""What a call under the answer grammar gives when the context holds the whole answer."""


class Scripted(StandInReasoner):
    """A reasoner replaying the given answers in turn (the pipeline's handling is under test)."""

    name = "scripted"

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        return ReasonerOutput(self.texts.pop(0), False, 10, 5, {})

    def close(self) -> None:
        pass


class FailsFirstEncode(WrappedSegmenter):
    """The real ONNX segmenter whose first encode fails (a transient CUDA error, say)."""

    name = "fails-first-encode"

    def __init__(self, inner: OrtSegmenter) -> None:
        super().__init__(inner)
        self.encodes = 0

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        self.encodes += 1
        if self.encodes == 1:
            raise RuntimeError("CUDA error: out of memory")
        return self.inner.encode(image)

    def decode(self, emb: ImageEmbedding, coords: np.ndarray, labels: np.ndarray) -> Any:
        return self.inner.decode(emb, coords, labels)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failed_encode_is_not_cached(ort: OrtSegmenter, image: np.ndarray, overlap: bool) -> None:
    seg = FailsFirstEncode(ort)
    model = SegZeroEdge(
        Scripted(ANSWER_NONE, ANSWER_ONE), seg, family="multi-object", overlap=overlap
    )
    first = model.segment(image, "the knife")  # no objects: nobody waits for the encoding
    assert first.status is Status.NO_OBJECT
    second = model.segment(image, "the knife")  # same frame: must encode again, not re-raise
    assert second.status is Status.OK and second.mask.any()
    assert seg.encodes == 2
    model.close()


class Gate(StandInReasoner):
    """Wraps a real reasoner: tells when generate() has started."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.started, self.finished = threading.Event(), threading.Event()

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        self.started.set()
        out = self.inner.generate(image, prompt)
        self.finished.set()
        return out

    def close(self) -> None:
        self.inner.close()


def test_close_waits_for_a_segment_on_another_thread(tiny_bundle: Path, image: np.ndarray) -> None:
    reasoner, segmenter, family = open_backends(
        tiny_bundle, segmenter_backend="onnxruntime", max_new_tokens=24, think_budget=12
    )
    gate = Gate(reasoner)
    model = SegZeroEdge(gate, segmenter, family=family)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["out"] = model.segment(image, "the knife")
        except BaseException as e:  # pragma: no cover - reported below
            result["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    assert gate.started.wait(60)
    model.close()  # before issue 14: SIGSEGV in llama_decode
    assert gate.finished.is_set()  # close() returned only after the call was through
    worker.join(60)
    assert "error" not in result, result
    assert result["out"].status in (Status.OK, Status.NO_OBJECT, Status.TRUNCATED)
    with pytest.raises(RuntimeError, match="SegZeroEdge has been closed"):
        model.segment(image, "the knife")
    # the backends themselves refuse calls after close with a clear error
    with pytest.raises(RuntimeError, match="LlamaCppReasoner has been closed"):
        reasoner.generate(np.zeros((840, 840, 3), np.uint8), "x")
    with pytest.raises(RuntimeError, match="OrtSegmenter has been closed"):
        segmenter.encode(np.zeros((1, 3, 1024, 1024), np.float32))
    with pytest.raises(RuntimeError, match="OrtSegmenter has been closed"):
        segmenter.decode(ImageEmbedding(0, 0, 0), np.zeros((1, 1, 2)), np.ones((1, 1)))


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_during_segment_reaches_the_caller(tiny_bundle: Path, image: np.ndarray) -> None:
    reasoner, segmenter, family = open_backends(
        tiny_bundle, segmenter_backend="onnxruntime", max_new_tokens=24, think_budget=12
    )
    gate = Gate(reasoner)

    def interrupt() -> None:
        gate.started.wait(60)
        _thread.interrupt_main()  # as Ctrl+C: lands wherever the main thread is, callbacks too

    with SegZeroEdge(gate, segmenter, family=family) as model:
        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt):
            model.segment(image, "the knife")
            raise AssertionError("segment() returned normally after Ctrl+C")
        # still usable: the grammar closes the answer after the think budget, so any model's
        # answer parses (an object or none), never unparseable or truncated
        assert model.segment(image, "the knife").status in PARSED


# --- random hostile queries ---------------------------------------------------------------

SPECIAL = ["<|im_end|>", "<|im_start|>", "<|vision_start|>", "<|image_pad|>", "<|endoftext|>"]
MARKERS = ["<__media__>", "<think>", "</think>", "<answer>", "</answer>", "<|box_start|>"]
PIECES = st.one_of(
    st.sampled_from(SPECIAL + MARKERS),
    st.text(min_size=1, max_size=12),  # includes lone surrogates
    st.sampled_from(["\ud800", "\udcff", "\x00", "\n", "\u202e"]),
    st.integers(1, 1000).map(lambda n: "刀" * n),
    st.integers(1, 400).map(lambda n: "🍞" * n),
)
QUERIES = st.lists(PIECES, min_size=1, max_size=6).map("".join)


@pytest.fixture(scope="module")
def small_model(tiny_bundle: Path) -> Iterator[SegZeroEdge]:
    """The tiny bundle with a 1280-cell context and short generations: long queries hit the
    context limit."""
    with SegZeroEdge.from_bundle(
        tiny_bundle,
        segmenter_backend="onnxruntime",
        n_ctx=1280,
        max_new_tokens=8,
        think_budget=4,
        n_threads=2,
    ) as m:
        yield m


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=QUERIES)
def test_random_queries_give_a_status_or_a_documented_error(
    small_model: SegZeroEdge, image: np.ndarray, query: str
) -> None:
    try:
        r = small_model.segment(image, query)
    except ValueError as e:  # documented: empty, too long, not text, over the context
        assert any(
            s in str(e)
            for s in ("query is empty", "query is too long", "not valid text", "KV cells")
        ), e
        return
    # the grammar closes the answer after the think budget: it parses unless the context
    # ran out first
    assert r.status in (*PARSED, Status.TRUNCATED), r.answer_raw
    assert r.mask.shape == image.shape[:2]


@pytest.fixture(scope="module")
def default_model(tiny_bundle: Path) -> Iterator[SegZeroEdge]:
    """The tiny bundle at its own context (n_ctx 4096 from the manifest)."""
    with SegZeroEdge.from_bundle(
        tiny_bundle, segmenter_backend="onnxruntime", max_new_tokens=8, think_budget=4
    ) as m:
        yield m


@pytest.mark.parametrize("query", ["刀" * 1000, "🍞" * 1000], ids=["CJK", "emoji"])
def test_long_queries_at_the_bundle_context(
    default_model: SegZeroEdge, image: np.ndarray, query: str
) -> None:
    """1000-character queries on the bundle's 4096-cell context: truncated or refused at the
    start, never "llama_decode failed"."""
    n_ctx = default_model.reasoner.n_ctx  # type: ignore[attr-defined]
    cells = len(default_model.reasoner.prompt_tokens(default_model.family.build_prompt(query)))  # type: ignore[attr-defined]
    print(f"\n{query[:3]!r}...: {cells} KV cells of {n_ctx}")
    try:
        r = default_model.segment(image, query)
    except ValueError as e:
        assert cells >= n_ctx and "KV cells" in str(e)
        return
    # the prompt fits, but leaves fewer KV cells than the answer needs: truncated, no error
    assert cells < n_ctx and r.status is Status.TRUNCATED, r.answer_raw


def test_segment_many_checks_every_query_before_any_model_work(
    small_model: SegZeroEdge, image: np.ndarray
) -> None:
    """A query under the character limit but over the context in tokens, after a good one:
    refused before the reasoner or SAM2 ran for either (no result is lost part-way)."""
    from segzero_edge.image import frame_key
    from segzero_edge.prompt import MAX_QUERY_CHARS

    fresh = np.ascontiguousarray(image[::-1])  # a frame no other test encoded
    reasoner: Any = small_model.reasoner
    long_query = "刀" * 400
    cells = len(reasoner.prompt_tokens(small_model.family.build_prompt(long_query)))
    assert len(long_query) <= MAX_QUERY_CHARS and cells >= reasoner.n_ctx
    stats, cached = reasoner.last_stats, len(reasoner.prefix_cache)
    with pytest.raises(ValueError, match=f"the prompt needs {cells} KV cells"):
        small_model.segment_many(fresh, ["the knife", long_query])
    assert reasoner.last_stats is stats  # generate() did not run for "the knife"
    assert len(reasoner.prefix_cache) == cached
    assert frame_key(fresh) not in small_model._cache  # nor did SAM2 encode the frame
    # 8 new tokens: the answer parses or is cut off by the budget, never unparseable
    assert small_model.segment_many(fresh, ["the knife"])[0].status in (*PARSED, Status.TRUNCATED)
    assert reasoner.last_stats is not stats


@pytest.mark.parametrize(
    ("option", "value"),
    [("cache_frames", float("inf")), ("cache_frames", "4"), ("cache_frames", None),
     ("max_objects", 2.5), ("max_objects", 0)],
)  # fmt: skip
def test_bad_pipeline_options_are_refused(
    ort: OrtSegmenter, tiny_bundle: Path, option: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=f"{option} must be a whole number"):
        SegZeroEdge(Scripted(), ort, family="multi-object", **{option: value})
    if option == "cache_frames":  # from_bundle: before the backends load
        with pytest.raises(ValueError, match=f"{option} must be a whole number"):
            SegZeroEdge.from_bundle(tiny_bundle, **{option: value})
