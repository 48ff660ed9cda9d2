"""The one "object present" rule (:func:`segzero_edge.tracking.result.object_present`): a
tracked frame's ``present``, its ``status``, what the ROS messages publish and the tracker's
lost-frame count agree, also where they used to disagree (a positive object score with an
empty mask was ``present`` yet had no box, so it was missing from the published objects, and
``score_threshold`` moved only the lost-frame count)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segzero_edge.ros.messages import Header
from segzero_edge.ros.results import detections_message, object_masks
from segzero_edge.tracking.result import TrackedSegmentation, object_present, tracked_frame
from segzero_edge.types import Status

pytestmark = pytest.mark.runtime

HW = (48, 64)


def _logits(inside: bool) -> np.ndarray:
    """Low-res logits [256, 256]: a square > 0 when ``inside``, else all < 0 (empty mask)."""
    out = np.full((256, 256), -8.0, np.float32)
    if inside:
        out[64:128, 96:160] = 8.0
    return out


def test_the_rule() -> None:
    box = (1, 2, 3, 4)
    assert object_present(0.5, box) and not object_present(0.0, box)
    assert not object_present(5.0, None)  # a positive score but an empty mask
    assert not object_present(float("nan"), box)
    assert not object_present(1.0, box, score_threshold=2.0)
    assert object_present(-1.0, box, score_threshold=-2.0)


def test_a_positive_score_with_an_empty_mask_is_lost_everywhere() -> None:
    """Object 0: score 3 and an empty mask; object 1: score 2 and a mask. Before one rule,
    object 0 was present (score > 0) but had no box, so the detections left it out."""
    r = tracked_frame(
        [_logits(False), _logits(True)], [0.9, 0.8], [3.0, 2.0], HW,
        frame_index=4, reasoned=False, score_threshold=0.0,
    )  # fmt: skip
    assert r.objects[0].box is None and r.objects[1].box is not None
    assert r.present == [False, True]
    assert r.describe() == "frame 4 - tracking - object 1 lost, object 2 present"
    assert r.status is Status.OK
    published = [d.id for d in detections_message(r, Header(), "q").detections]
    assert published == [str(i) for i, p in enumerate(r.present) if p] == ["1"]
    assert sorted(object_masks(r)) == [1]
    only_empty = tracked_frame(
        [_logits(False)], [0.9], [3.0], HW, frame_index=5, reasoned=False, score_threshold=0.0
    )
    assert only_empty.present == [False] and only_empty.status is Status.NO_OBJECT


def test_score_threshold_moves_present_and_status_too() -> None:
    """``score_threshold`` 2.5: an object with a mask and score 2.0 is lost (it used to be
    present, with status OK, while the tracker counted the frame as lost)."""
    kw = dict(frame_index=1, reasoned=False, score_threshold=2.5)
    low = tracked_frame([_logits(True)], [0.9], [2.0], HW, **kw)  # type: ignore[arg-type]
    high = tracked_frame([_logits(True)], [0.9], [3.0], HW, **kw)  # type: ignore[arg-type]
    assert low.present == [False] and low.status is Status.NO_OBJECT
    assert (
        "object 1 lost" in low.describe() and not detections_message(low, Header(), "q").detections
    )
    assert high.present == [True] and high.status is Status.OK
    back = TrackedSegmentation.from_json(json.loads(json.dumps(low.to_json())))
    assert back.score_threshold == 2.5 and back.present == [False]
    assert low.to_json()["present"] == [False]


def test_bad_tracked_json_is_refused() -> None:
    r = tracked_frame([_logits(True)], [0.9], [3.0], HW, frame_index=1, reasoned=False,
                      score_threshold=0.0)  # fmt: skip
    data = json.loads(json.dumps(r.to_json()))
    for key, value, match in (
        ("score_threshold", "high", "score_threshold must be a number"),
        ("score_threshold", float("inf"), "score_threshold must be finite"),
        ("object_score_logits", [1.0, 2.0], "2 values for 1 objects"),
    ):
        with pytest.raises(ValueError, match=match):
            TrackedSegmentation.from_json({**data, key: value})
