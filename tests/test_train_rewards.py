"""Seg-Zero reward terms on hand-computed cases (segzero_train.rewards)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_train.rewards import (
    GroundTruth,
    answer_format_soft,
    answer_format_strict,
    box_iou,
    box_l1,
    item_format_reward,
    matched_point_distance,
    multi_object_accuracy,
    multi_object_rewards,
    non_repeat_reward,
    segzero_rewards,
    think_format_reward,
)


def gen(items: object, think: str = "ok") -> str:
    """A well-formed generation around the JSON of ``items``."""
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def one(box: list[float], point: list[float]) -> str:
    return gen([{"bbox_2d": box, "point_2d": point}])


# ---------------------------------------------------------------- geometry (hand-computed)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 9, 9], [0, 0, 9, 9], 1.0),  # identical
        ([0, 0, 9, 9], [0, 0, 9, 19], 100 / 200),  # inclusive areas 100 and 200
        ([0, 0, 9, 9], [0, 0, 9, 18], 100 / 190),
        ([10, 10, 50, 50], [20, 20, 60, 60], 961 / 2401),  # 31*31 / (41*41*2 - 961)
        ([0, 0, 100, 100], [5, 5, 105, 105], 9216 / 11186),
        ([0, 0, 9, 9], [10, 10, 19, 19], 0.0),  # disjoint
        ([0, 0, 9, 9], [9, 9, 19, 19], 1 / 220),  # one shared pixel: 1 / (100 + 121 - 1)
        ([9, 0, 0, 9], [0, 0, 9, 9], 0.0),  # inverted box
    ],
)
def test_box_iou_inclusive(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou(a, b) == pytest.approx(expected)


def test_box_l1_and_point_pairing() -> None:
    assert box_l1([10, 10, 50, 50], [20, 20, 60, 60]) == 10.0
    assert box_l1([0, 0, 9, 9], [0, 0, 9, 18]) == 2.25
    # swapped order: best pairing is 0, the naive order would be 113.1
    assert matched_point_distance([(10, 10), (90, 90)], [(90, 90), (10, 10)]) == 0.0
    # (10,10)-(10,200)=190 and (90,90)-(90,90)=0 -> 95; naive order (113.1+136.0)/2 = 124.6
    assert matched_point_distance([(10, 10), (90, 90)], [(90, 90), (10, 200)]) == 95.0
    assert matched_point_distance([(0, 0)], [(3, 4), (100, 100)]) == 5.0  # min(M, N) pairs
    assert matched_point_distance([], [(0, 0)]) == math.inf


# ---------------------------------------------------------------- think format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a\nb</think>\n\n <answer>\n[]\n</answer>", 1.0),  # DOTALL, whitespace between
        ("<think></think><answer></answer>", 1.0),
        (" <think>a</think><answer>b</answer>", 0.0),  # leading text
        ("<think>a</think><answer>b</answer> thanks", 0.0),  # trailing text
        ("<think>a</think>x<answer>b</answer>", 0.0),  # text between the blocks
        ("<answer>b</answer>", 0.0),
        ('<think>a</think><answer>[{"bbox_2d": [1, 2', 0.0),  # truncated
        ("", 0.0),
    ],
)
def test_think_format(text: str, expected: float) -> None:
    assert think_format_reward(text) == expected


# ---------------------------------------------------------------- answer format strict / soft


@pytest.mark.parametrize(
    ("text", "strict", "soft"),
    [
        (one([1, 2, 3, 4], [2, 3]), 1.0, 1.0),
        (gen([{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}] * 2), 1.0, 1.0),
        (gen({"bbox": [1, 2, 3, 4], "points_1": [2, 3], "points_2": [3, 3]}), 1.0, 1.0),  # v1
        (gen([{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3], "label": "x"}]), 0.0, 1.0),  # extra key
        (gen({"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}), 0.0, 1.0),  # dict, not list
        (gen([{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3, 4]}]), 0.0, 0.0),  # 3-number point
        (gen([{"bbox_2d": [1, 2, 3], "point_2d": [2, 3]}]), 0.0, 0.0),  # 3-number box
        (gen([{"bbox_2d": ["1", 2, 3, 4], "point_2d": [2, 3]}]), 0.0, 0.0),  # string coordinate
        (gen([{"bbox_2d": [1, 2, 3, 4]}]), 0.0, 0.0),  # no point
        (gen([]), 0.0, 0.0),  # empty list
        (
            '<think>a</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}] done</answer>',
            0.0,
            1.0,
        ),
        ('no tags {"bbox_2d": [1,2,3,4], "point_2d": [2,3]}', 0.0, 1.0),  # soft searches the text
        ('<think>a</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d"', 0.0, 0.0),  # truncated
        ("<think>a</think><answer>[{'bbox_2d': [1,2,3,4], 'point_2d': [2,3]}]</answer>", 0.0, 0.0),
    ],
)
def test_answer_format(text: str, strict: float, soft: float) -> None:
    assert answer_format_strict(text) == strict
    assert answer_format_soft(text) == soft


# ---------------------------------------------------------------- the five Seg-Zero terms

GT = GroundTruth(boxes=[[0, 0, 99, 99]], points=[[50, 50]])
TERMS = ("think_format", "answer_format", "box_iou", "box_l1", "points")


@pytest.mark.parametrize(
    ("text", "gt", "expected"),
    [
        # exact: everything
        (one([0, 0, 99, 99], [50, 50]), GT, (1, 1, 1, 1, 1)),
        # IoU 9216/11186 > .5 (shifted by 5, box 101 px), L1 5 < 10; point (50,50) dist 0
        (one([5, 5, 105, 105], [50, 50]), GT, (1, 1, 1, 1, 1)),
        # L1 exactly 10 -> 0; IoU 90*90/(10000+10000-8100) = 0.68 -> 1
        (one([10, 10, 109, 109], [50, 50]), GT, (1, 1, 1, 0, 1)),
        # IoU exactly 0.5 (100x50 inside 100x100) -> 0; L1 = 50/4 = 12.5 -> 0
        (one([0, 0, 99, 49], [50, 20]), GT, (1, 1, 0, 0, 1)),
        # point distance 100 (60, 80 triangle) -> 0; inside the box
        (one([0, 0, 200, 200], [110, 130]), GT, (1, 1, 0, 0, 0)),
        # point distance 99.2 -> 1
        (one([0, 0, 200, 200], [110, 129]), GT, (1, 1, 0, 0, 1)),
        # point right at the GT point but outside its own predicted box -> 0
        (one([0, 0, 40, 40], [50, 50]), GT, (1, 1, 0, 0, 0)),
        # point on the box border counts as inside
        (one([0, 0, 50, 50], [50, 50]), GT, (1, 1, 0, 0, 1)),
        # extra key: strict format 0, accuracy terms still scored
        (gen([{"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50], "x": 1}]), GT, (1, 0, 1, 1, 1)),
        # only the first object counts
        (
            gen(
                [
                    {"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]},
                    {"bbox_2d": [300, 300, 400, 400], "point_2d": [350, 350]},
                ]
            ),
            GT,
            (1, 1, 1, 1, 1),
        ),
        (
            gen(
                [
                    {"bbox_2d": [300, 300, 400, 400], "point_2d": [350, 350]},
                    {"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]},
                ]
            ),
            GT,
            (1, 1, 0, 0, 0),
        ),
        # no point: format 0, box terms 1, points 0
        (gen([{"bbox_2d": [0, 0, 99, 99]}]), GT, (1, 0, 1, 1, 0)),
        # v1 schema, GT with two points in swapped order (best pairing 95 < 100)
        (
            gen({"bbox": [0, 0, 99, 99], "points_1": [10, 10], "points_2": [90, 90]}),
            GroundTruth(boxes=[[0, 0, 99, 99]], points=[[90, 90], [10, 200]]),
            (1, 1, 1, 1, 1),
        ),
        # several GT boxes: the target is their union box (0, 0, 30, 30)
        (
            one([0, 0, 30, 30], [5, 5]),
            GroundTruth(boxes=[[0, 0, 10, 10], [20, 20, 30, 30]], points=[[5, 5], [25, 25]]),
            (1, 1, 1, 1, 1),
        ),
        # answer without think block
        (
            '<answer>[{"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]}]</answer>',
            GT,
            (0, 1, 1, 1, 1),
        ),
        # truncated in the answer: nothing
        (
            '<think>a</think><answer>[{"bbox_2d": [0, 0, 99, 99], "point_2d": [50',
            GT,
            (0, 0, 0, 0, 0),
        ),
        # truncated in the think block
        ("<think>the object is", GT, (0, 0, 0, 0, 0)),
        # unparseable JSON (single quotes)
        (
            "<think>a</think><answer>[{'bbox_2d': [0,0,99,99], 'point_2d': [50,50]}]</answer>",
            GT,
            (1, 0, 0, 0, 0),
        ),
        # empty answer list
        (gen([]), GT, (1, 0, 0, 0, 0)),
        # empty ground truth: accuracy terms 0
        (one([0, 0, 99, 99], [50, 50]), GroundTruth(boxes=[], points=[]), (1, 1, 0, 0, 0)),
        # NaN coordinates are not numbers
        (
            '<think>a</think><answer>[{"bbox_2d": [NaN, 0, 99, 99], "point_2d": [5, 5]}]</answer>',
            GT,
            (1, 0, 0, 0, 0),
        ),
    ],
)
def test_segzero_rewards(text: str, gt: GroundTruth, expected: tuple[int, ...]) -> None:
    r = segzero_rewards(text, gt)
    got = tuple(r[t] for t in TERMS)
    assert got == tuple(float(v) for v in expected), r
    assert r["total"] == sum(expected)
    assert list(r) == [*TERMS, "total"]


def test_segzero_soft_variant() -> None:
    text = gen({"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]})
    assert segzero_rewards(text, GT)["answer_format"] == 0.0
    soft = segzero_rewards(text, GT, strict=False)
    assert soft["answer_format"] == 1.0 and soft["total"] == 5.0


# ---------------------------------------------------------------- multi-object

GT2 = GroundTruth(boxes=[[0, 0, 99, 99], [200, 200, 299, 299]], points=[[50, 50], [250, 250]])
A = {"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]}
B = {"bbox_2d": [200, 200, 299, 299], "point_2d": [250, 250]}
FAR = {"bbox_2d": [500, 500, 600, 600], "point_2d": [550, 550]}


@pytest.mark.parametrize(
    ("items", "gt", "accuracy"),
    [
        ([A, B], GT2, 3.0),
        ([B, A], GT2, 3.0),  # order does not matter (Hungarian)
        ([A, B, FAR], GT2, 6 / 3),  # extra object: max(M, N) = 3
        ([A], GT2, 3 / 2),  # missing object
        ([FAR], GT2, 0.0),
        ([A, A], GT2, 3 / 2),  # a duplicate matches only once
        # IoU 8600/10000 and L1 14/4 = 3.5 pass; point (50, 88) is 2 px from the GT point but
        # outside its own box (y2 = 85): 2 of 3
        (
            [{"bbox_2d": [0, 0, 99, 85], "point_2d": [50, 88]}],
            GroundTruth(boxes=[[0, 0, 99, 99]], points=[[50, 90]]),
            2.0,
        ),
        # IoU 10000/14100 = 0.71 passes, L1 41/4 = 10.25 fails, point passes: 2
        (
            [{"bbox_2d": [0, 0, 99, 140], "point_2d": [50, 50]}],
            GroundTruth(boxes=[[0, 0, 99, 99]], points=[[50, 50]]),
            2.0,
        ),
        # point 30 px away -> fails (< 30 needed): 2
        (
            [{"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 80]}],
            GroundTruth(boxes=[[0, 0, 99, 99]], points=[[50, 50]]),
            2.0,
        ),
        ([], GT2, 0.0),  # nothing predicted
        ([], GroundTruth(boxes=[], points=[]), 3.0),  # nothing to find, nothing predicted
        ([A], GroundTruth(boxes=[], points=[]), 0.0),
        # one malformed item makes the accuracy 0 (as the reference code)
        ([A, {"bbox_2d": [200, 200, 299, 299]}], GT2, 0.0),
    ],
)
def test_multi_object_accuracy(items: list, gt: GroundTruth, accuracy: float) -> None:
    assert multi_object_accuracy(gen(items), gt) == pytest.approx(accuracy)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([A, B], 2.0),
        ([{"bbox_2d": [0, 0, 1, 1]}, A], 1.5),  # (1 + 2) / 2
        ([{"bbox_2d": [0, 0, 1], "point_2d": [1, 1]}], 1.0),  # bad box, good point
        ([{"point_2d": [1, 1, 1]}, "x", A], 2 / 3),  # (0 + 0 + 2) / 3
        ([], 0.0),
        ({"bbox_2d": [0, 0, 1, 1], "point_2d": [1, 1]}, 0.0),  # not a list
    ],
)
def test_item_format(items: object, expected: float) -> None:
    assert item_format_reward(gen(items)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "allowed", "expected"),
    [
        ("The cat is red. The dog is blue.", 0, 1.0),
        ("The cat is red. The dog is blue. The cat is red.", 0, 0.0),
        ("The cat is red. The dog is blue.  The cat is red ", 0, 0.0),  # stripped
        ("The cat is red. The dog is blue. The cat is red.", 1, 1.0),  # reference tolerance
        ("a. a. a.", 1, 0.0),  # two repeats
        ("a.. b...", 0, 1.0),  # empty parts are dropped
        ("", 0, 1.0),
    ],
)
def test_non_repeat(text: str, allowed: int, expected: float) -> None:
    assert non_repeat_reward(text, allowed) == expected


def test_multi_object_rewards_totals() -> None:
    r = multi_object_rewards(gen([B, A], think="Two squares. One on the left."), GT2)
    assert r == {
        "think_format": 1.0,
        "item_format": 2.0,
        "accuracy": 3.0,
        "non_repeat": 1.0,
        "total": 7.0,
    }
    r = multi_object_rewards(gen([A], think="Hmm. Look here. Look here."), GT2)
    assert r == {
        "think_format": 1.0,
        "item_format": 2.0,
        "accuracy": 1.5,
        "non_repeat": 0.0,
        "total": 4.5,
    }
    truncated = '<think>two squares</think><answer>[{"bbox_2d": [0, 0, 99, 99], "point_'
    r = multi_object_rewards(truncated, GT2)
    assert r == {
        "think_format": 0.0,
        "item_format": 0.0,
        "accuracy": 0.0,
        "non_repeat": 1.0,
        "total": 1.0,
    }


def test_multi_object_gt_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="one point per box"):
        multi_object_rewards(gen([A]), GroundTruth(boxes=[[0, 0, 1, 1]], points=[]))
    with pytest.raises(ValueError, match="ground truth box"):
        GroundTruth(boxes=[[0, 0, 1]], points=[])


# ---------------------------------------------------------------- never raises

JUNK = [
    None,
    "",
    "<answer>null</answer>",
    "<answer>[1, 2]</answer>",
    '<answer>{"bbox_2d": "x"}</answer>',
    '<answer>[{"bbox_2d": [1e999, 0, 1, 1], "point_2d": [0, 0]}]</answer>',
    '<answer>[{"bbox_2d": [true, 0, 1, 1], "point_2d": [0, 0]}]</answer>',
    "<answer>" + "[" * 5000 + "</answer>",
    "<think><answer></answer></think>",
]


@pytest.mark.parametrize("text", JUNK)
def test_junk_never_raises(text: object) -> None:
    for fn in (segzero_rewards, multi_object_rewards):
        r = fn(text, GT2)  # type: ignore[arg-type]
        assert all(0.0 <= v <= 7.0 for v in r.values()), r
        assert r.get("answer_format", 0.0) == 0.0 and r.get("accuracy", 0.0) == 0.0


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list('<>/thinkswer{}[]":,.0123456789 bbox_2dpt-')), max_size=120
    )
)
def test_fuzz_never_raises(text: str) -> None:
    s = segzero_rewards(text, GT)
    m = multi_object_rewards(text, GT2)
    assert 0 <= s["total"] <= 5 and 0 <= m["total"] <= 7
