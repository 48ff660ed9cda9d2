"""``SegZeroEdge.track`` as a caller sees it: several objects tracked independently, asked-for
and automatic re-reasoning, closing, the result's JSON (onnxruntime, the tiny SAM2.1)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from segzero_edge import SegZeroEdge, Status
from segzero_edge.tracker import TrackedSegmentation
from segzero_edge.types import ObjectPrompt
from tests.fixtures.tracking import (
    QUERY,
    SHORT_CLIP,
    OurTrack,
    ScriptedReasoner,
    seed_prompt,
    synthetic_clip,
)


def test_objects_are_tracked_independently(
    ort_segmenter: Any, ort_memory: Any, short_track: OurTrack
) -> None:
    """Two objects: the first one's masks and scores are those of tracking it alone (SAM2's
    per-object inference); the second has its own."""
    frames = synthetic_clip(SHORT_CLIP)[:2]
    second = ObjectPrompt(box=(600, 100, 800, 300), points=((700, 200),))
    reasoner = ScriptedReasoner([seed_prompt(SHORT_CLIP), second])
    model = SegZeroEdge(reasoner, ort_segmenter, family="multi-object", memory=ort_memory)
    tracker = model.track(frames[0], QUERY, num_frames=SHORT_CLIP)
    assert tracker.num_objects == 2
    results = [tracker.last, tracker.update(frames[1])]
    for r, alone in zip(results, short_track.results, strict=False):
        assert isinstance(r, TrackedSegmentation)
        assert r.object_masks is not None and r.object_masks.shape == (2, *frames[0].shape[:2])
        assert len(r.object_scores) == len(r.boxes) == len(r.scores) == len(r.present) == 2
        assert np.array_equal(r.object_masks[0], alone.object_masks[0])
        assert r.object_scores[0] == alone.object_scores[0]
        assert np.array_equal(r.mask, r.object_masks.any(axis=0))
        assert not np.array_equal(r.object_masks[1], r.object_masks[0])
        areas = r.object_masks.mean(axis=(1, 2))
        print(f"frame {r.frame_index}: object scores {r.object_scores}, areas {areas}")
    assert results[1].timings["memory_attention"] > 0 and results[1].timings["total"] > 0
    data = json.loads(json.dumps(results[1].to_json()))
    assert data["frame_index"] == 1 and data["reasoned"] is False and len(data["boxes"]) == 2


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
    r = tracker.reason(frames[3], query="the grey bar")
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
        assert rgb_result.object_scores == pytest.approx(nv12_result.object_scores, abs=1e-6)
    small = np.ascontiguousarray(frames[2][: h // 2, : frames[2].shape[1] // 2])
    with pytest.raises(ValueError, match="re-seed on the new size"):
        tracker.update(small)
    assert tracker.frame_index == 1  # the refused frame did not count
    r = tracker.update(small, reason=True)
    assert r.reasoned and r.mask.shape == small.shape[:2]
