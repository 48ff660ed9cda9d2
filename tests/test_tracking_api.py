"""``SegZeroEdge.track`` as a caller sees it: several objects tracked independently, asked-for
and automatic re-reasoning, closing, the result's JSON (onnxruntime, the tiny SAM2.1)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from segzero_edge import SegZeroEdge, Status
from segzero_edge.answer import AnswerObject
from segzero_edge.tracker import TrackedSegmentation
from tests.fixtures.tracking import (
    QUERY,
    SHORT_CLIP,
    OurTrack,
    ScriptedReasoner,
    seed_prompt,
    synthetic_clip,
)
from tests.fixtures.wrapped import WrappedSegmenter


def test_objects_are_tracked_independently(
    ort_segmenter: Any, ort_memory: Any, short_track: OurTrack
) -> None:
    """Two objects: the first one's masks and scores are those of tracking it alone (SAM2's
    per-object inference); the second has its own."""
    frames = synthetic_clip(SHORT_CLIP)[:2]
    second = AnswerObject(box=(600, 100, 800, 300), points=((700, 200),))
    reasoner = ScriptedReasoner([seed_prompt(SHORT_CLIP), second])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY, num_frames=SHORT_CLIP)
    assert tracker.num_objects == 2
    results = [tracker.last, tracker.update(frames[1])]
    for r, alone in zip(results, short_track.results, strict=False):
        assert isinstance(r, TrackedSegmentation)
        assert r.object_masks is not None and r.object_masks.shape == (2, *frames[0].shape[:2])
        assert len(r.object_score_logits) == len(r.objects) == len(r.present) == 2
        assert len(r.iou_predictions) == 2 and r.object_masks.dtype == bool
        assert np.array_equal(r.object_masks[0], alone.object_masks[0])
        assert r.object_score_logits[0] == alone.object_score_logits[0]
        assert np.array_equal(r.mask, r.object_masks.any(axis=0))
        assert not np.array_equal(r.object_masks[1], r.object_masks[0])
        areas = r.object_masks.mean(axis=(1, 2))
        print(f"frame {r.frame_index}: object scores {r.object_score_logits}, areas {areas}")
    assert results[1].timings["memory_attention"] > 0 and results[1].timings["total"] > 0
    data = json.loads(json.dumps(results[1].to_json()))
    assert data["frame_index"] == 1 and data["reasoned"] is False and len(data["objects"]) == 2
    assert len(data["object_masks"]) == 2 and data["schema_version"] == 1


def test_rereasoning_on_request_and_when_lost(ort_segmenter: Any, ort_memory: Any) -> None:
    """``score_threshold`` above any score: every frame counts as lost, so with
    ``rereason_after=2`` the reasoner runs again on the frame after two lost frames; a new
    query on request; a closed tracker refuses frames."""
    frames = synthetic_clip(4)
    reasoner = ScriptedReasoner([seed_prompt(18)])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY, rereason_after=2, score_threshold=1e9)
    flags = [tracker.last.reasoned] + [tracker.update(f).reasoned for f in frames[1:3]]
    assert flags == [True, False, True] and reasoner.calls == 2
    r = tracker.update(frames[3], query="the grey bar")
    assert r.reasoned and tracker.query == "the grey bar" and reasoner.calls == 3
    assert r.frame_index == 3 and r.reasoning == "the red disc is the ball"
    tracker.close()
    with pytest.raises(RuntimeError, match="closed"):
        tracker.update(frames[0])


def test_no_object_answer(ort_segmenter: Any, ort_memory: Any) -> None:
    """A reasoner that finds nothing: empty results, NO_OBJECT, no SAM2 work per frame."""
    frames = synthetic_clip(2)
    model = SegZeroEdge(
        ScriptedReasoner([]), ort_segmenter, family="multi-object", memory=ort_memory
    )
    tracker = model.track(frames[0], QUERY)
    r = tracker.update(frames[1])
    assert tracker.num_objects == 0 and r.status is Status.NO_OBJECT and not r.mask.any()
    assert "sam_encode" not in r.timings and tracker.memory_bytes() == 0
    with pytest.raises(ValueError, match="rereason_after"):
        model.track(frames[0], QUERY, rereason_after=0)
    for bad in ("x", True, 2.5):
        with pytest.raises(ValueError, match="rereason_after must be a whole number"):
            model.track(frames[0], QUERY, rereason_after=bad)


def test_nv12_frames_and_a_new_frame_size(ort_segmenter: Any, ort_memory: Any) -> None:
    """Camera frames go in as NV12 as for ``segment()``: the same masks as their RGB; a frame
    of another size is refused unless the caller re-seeds on it."""
    from segzero_edge import pixels
    from segzero_edge.image import NV12Frame

    frames = [pixels.nv12_to_rgb(pixels.rgb_to_nv12(f)) for f in synthetic_clip(3)]
    h = frames[0].shape[0]

    def nv12(rgb: np.ndarray) -> NV12Frame:
        planes = pixels.rgb_to_nv12(rgb)
        return NV12Frame(planes[:h].copy(), planes[h:].copy())

    runs = []
    for as_nv12 in (False, True):
        model = SegZeroEdge(
            ScriptedReasoner([seed_prompt(3)]), ort_segmenter, family="multi-object",
            memory=ort_memory,
        )  # fmt: skip
        wrap = nv12 if as_nv12 else (lambda f: f)
        tracker = model.track(wrap(frames[0]), QUERY, num_frames=3)
        runs.append([tracker.last, tracker.update(wrap(frames[1]))])
    for rgb_result, nv12_result in zip(*runs, strict=True):
        assert np.array_equal(rgb_result.mask, nv12_result.mask)
        assert rgb_result.object_score_logits == pytest.approx(
            nv12_result.object_score_logits, abs=1e-6
        )
    small = np.ascontiguousarray(frames[2][: h // 2, : frames[2].shape[1] // 2])
    with pytest.raises(ValueError, match="re-seed on the new size"):
        tracker.update(small)
    assert tracker.frame_index == 1  # the refused frame did not count
    r = tracker.update(small, reason=True)
    assert r.reasoned and r.mask.shape == small.shape[:2]


# --- faults leave the tracker as it was ------------------------------------------------------


def test_a_refused_reason_changes_nothing(ort_segmenter: Any, ort_memory: Any) -> None:
    """``update(frame, query="")`` is refused before the reasoner runs and keeps the query, the
    frame index and the objects: later re-seeds with the tracker's query still work."""
    frames = synthetic_clip(4)
    reasoner = ScriptedReasoner([seed_prompt(4)])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY)
    tracker.update(frames[1])
    held = tracker.memory_bytes()
    for bad in ("", "   ", "?!"):
        with pytest.raises(ValueError, match="query is empty"):
            tracker.update(frames[2], query=bad)
    assert tracker.query == QUERY and tracker.frame_index == 1 and reasoner.calls == 1
    assert tracker.num_objects == 1 and tracker.memory_bytes() == held
    assert tracker.last.frame_index == 1
    r = tracker.update(frames[2], reason=True)  # the tracker's own query: works
    assert r.reasoned and r.frame_index == 2 and reasoner.calls == 2
    assert tracker.update(frames[3]).frame_index == 3


class FailingDecoder(WrappedSegmenter):
    """The real ONNX segmenter whose decoder fails on the ``fail_on``-th tracking decode
    (a transient CUDA error during a re-seed, say); every other call is the real one."""

    name = "failing-decoder"

    def __init__(self, inner: Any, fail_on: int) -> None:
        super().__init__(inner)
        self.fail_on, self.decodes = fail_on, 0

    def decode(self, emb: Any, coords: np.ndarray, labels: np.ndarray) -> Any:
        return self.inner.decode(emb, coords, labels)

    def decode_track(self, emb: Any, coords: np.ndarray, labels: np.ndarray) -> Any:
        self.decodes += 1
        if self.decodes == self.fail_on:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.decode_track(emb, coords, labels)

    def close(self) -> None:
        pass


def test_a_failed_reseed_keeps_the_objects_and_memory(ort_segmenter: Any, ort_memory: Any) -> None:
    """A backend failure during a re-seed reaches the caller, and the tracker goes on from
    the objects and memory it had: its next frames equal those of a tracker that never tried
    the re-seed."""
    from segzero_edge.errors import BackendError

    frames = synthetic_clip(4)
    prompt = seed_prompt(4)
    ref_model = SegZeroEdge(
        ScriptedReasoner([prompt]), ort_segmenter, family="multi-object", memory=ort_memory
    )
    ref = ref_model.track(frames[0], QUERY)
    expected = [ref.update(f) for f in frames[1:]]

    # decode_track calls: 1 seeds frame 0, 2 tracks frame 1, 3 is the re-seed on frame 2
    seg = FailingDecoder(ort_segmenter, fail_on=3)
    reasoner = ScriptedReasoner([prompt])
    model = SegZeroEdge(reasoner, seg, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY)
    tracker.update(frames[1])
    held, seed = tracker.memory_bytes(), tracker.seed
    with pytest.raises(BackendError, match="SAM2 decoder failed: CUDA error"):
        tracker.update(frames[2], query="the grey bar")
    assert reasoner.calls == 2  # the reasoner ran; SAM2 failed after it
    assert tracker.num_objects == 1 and tracker.memory_bytes() == held
    assert tracker.frame_index == 1 and tracker.query == QUERY and tracker.seed is seed
    got = [tracker.update(f) for f in frames[2:]]
    for r, e in zip(got, expected[1:], strict=True):
        assert r.status is e.status and r.frame_index == e.frame_index
        assert r.object_score_logits == e.object_score_logits and r.object_score_logits[0] > 0
        assert r.object_masks is not None and e.object_masks is not None
        assert np.array_equal(r.object_masks, e.object_masks)


def test_a_failed_update_does_not_advance(ort_segmenter: Any, ort_memory: Any) -> None:
    """A backend failure on a tracked frame leaves the frame index and memory as they were;
    the same frame then tracks as it would have."""
    from segzero_edge.errors import BackendError

    frames = synthetic_clip(3)
    prompt = seed_prompt(3)
    ref_model = SegZeroEdge(
        ScriptedReasoner([prompt]), ort_segmenter, family="multi-object", memory=ort_memory
    )
    ref = ref_model.track(frames[0], QUERY)
    expected = ref.update(frames[1])
    seg = FailingDecoder(ort_segmenter, fail_on=2)  # the first tracked frame
    model = SegZeroEdge(ScriptedReasoner([prompt]), seg, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY)
    held = tracker.memory_bytes()
    with pytest.raises(BackendError):
        tracker.update(frames[1])
    assert tracker.frame_index == 0 and tracker.memory_bytes() == held
    r = tracker.update(frames[1])
    assert r.frame_index == 1 and r.object_score_logits == expected.object_score_logits


def test_frames_past_the_clip_are_refused(ort_segmenter: Any, ort_memory: Any) -> None:
    """``num_frames`` is the clip's length: a frame past it is refused (SAM2 normalises the
    pointers' temporal distances by ``num_frames - 1``, 0 for one frame: NaN scores)."""
    frames = synthetic_clip(3)
    reasoner = ScriptedReasoner([seed_prompt(3)])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    one = model.track(frames[0], QUERY, num_frames=1)
    assert np.isfinite(one.last.object_score_logits).all()
    for call in (lambda: one.update(frames[1]), lambda: one.update(frames[1], reason=True)):
        with pytest.raises(ValueError, match=r"frame 1 is past the clip: num_frames=1"):
            call()
    assert one.frame_index == 0 and reasoner.calls == 1
    two = model.track(frames[0], QUERY, num_frames=2)
    r = two.update(frames[1])
    assert r.frame_index == 1 and np.isfinite(r.object_score_logits).all()
    with pytest.raises(ValueError, match="past the clip"):
        two.update(frames[2])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("score_threshold", float("nan")),
        ("score_threshold", float("inf")),
        ("score_threshold", "0.5"),
        ("score_threshold", None),
        ("score_threshold", True),
        ("num_frames", 2.0),
        ("num_frames", "3"),
        ("rereason_after", float("nan")),
    ],
)
def test_bad_tracker_options_are_refused_up_front(
    ort_segmenter: Any, ort_memory: Any, option: str, value: Any
) -> None:
    """A NaN, an infinity or a wrong type is a ``ValueError`` naming the option, before the
    reasoner runs."""
    reasoner = ScriptedReasoner([seed_prompt(3)])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    with pytest.raises(ValueError, match=option):
        model.track(synthetic_clip(1)[0], QUERY, **{option: value})
    assert reasoner.calls == 0
