"""The answer parser and coordinate mapping (Seg-Zero inference_scripts)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_edge.answer import AnswerObject, format_list_answer, parse_answer, to_image_pixels
from segzero_edge.types import ObjectPrompt, Status

pytestmark = pytest.mark.runtime


def test_multi_object_answer() -> None:
    text = (
        "<think>two knives, the left one is bigger</think>"
        '<answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]},'
        ' {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'
    )
    p = parse_answer(text)
    assert p.status is Status.OK
    assert p.reasoning == "two knives, the left one is bigger"
    assert p.objects == (
        AnswerObject((10, 100, 200, 210), ((30, 110),)),
        AnswerObject((225, 296, 706, 786), ((302, 410),)),
    )


def test_single_dict_and_legacy_forms() -> None:
    single = parse_answer('<think>x</think><answer>{"bbox_2d":[1,2,3,4],"point_2d":[2,3]}</answer>')
    assert single.objects == (AnswerObject((1, 2, 3, 4), ((2, 3),)),)
    legacy = parse_answer(
        '<think>x</think><answer>{"bbox": [5, 6, 50, 60], "points_1": [10, 20], '
        '"points_2": [30, 40]}</answer>'
    )
    assert legacy.status is Status.OK
    assert legacy.objects == (AnswerObject((5, 6, 50, 60), ((10, 20), (30, 40))),)


@pytest.mark.parametrize(
    ("text", "truncated", "status"),
    [
        ("<think>I see nothing</think><answer>[]</answer>", False, Status.NO_OBJECT),
        ("<think>hmm", True, Status.TRUNCATED),
        ('<think>a</think><answer>[{"bbox_2d": [1,2', True, Status.TRUNCATED),
        ("<think>a</think> no answer at all", False, Status.UNPARSEABLE),
        ("<think>a</think><answer>not json</answer>", False, Status.UNPARSEABLE),
        ('<answer>[{"bbox_2d": [1,2,3]}]</answer>', False, Status.UNPARSEABLE),
        ('<answer>[{"bbox_2d": [1,2,"x",4]}]</answer>', False, Status.UNPARSEABLE),
        ("<answer>[1, 2, 3]</answer>", False, Status.UNPARSEABLE),
        ("", False, Status.UNPARSEABLE),
    ],
)
def test_failure_statuses(text: str, truncated: bool, status: Status) -> None:
    p = parse_answer(text, truncated=truncated)
    assert p.status is status
    assert p.objects == ()


def test_almost_json_is_salvaged_as_written() -> None:
    text = "<answer>[{'bbox_2d': [300, 40, 100, 20], 'point_2d': [150, 30],},]</answer>"
    # single quotes: not JSON, the regex fallback needs double-quoted keys
    assert parse_answer(text).status is Status.UNPARSEABLE
    text = '<answer>[{"bbox_2d": [300, 40, 100, 20], "point_2d": [150.4, 30.6],},]</answer>'
    p = parse_answer(text)
    assert p.status is Status.OK
    # values as written: no rounding of resize coordinates, corners not reordered (as the reference)
    assert p.objects == (AnswerObject((300, 40, 100, 20), ((150.4, 30.6),)),)
    assert parse_answer(text, strict=True).status is Status.UNPARSEABLE  # Seg-Zero's rule


def test_mapping_back_is_the_reference_formula_unclamped() -> None:
    objs = [AnswerObject((0, 420, 839, 900), ((-5, 420),))]
    (o,) = to_image_pixels(objs, (480, 640))
    # x * (640 / 840), y * (480 / 840), int(v * f + 0.5) (infer_multi_object.py), no clamping
    assert o.box == (0, int(420 * 480 / 840 + 0.5), int(839 * 640 / 840 + 0.5), 514)
    assert o.points == ((-3, 240),)
    (same,) = to_image_pixels([AnswerObject((1, 2, 3, 4), ((5, 6),))], (840, 840))
    assert same == ObjectPrompt((1, 2, 3, 4), ((5, 6),))  # image pixels: the other type


coord = st.integers(min_value=0, max_value=839)


@st.composite
def objects(draw: st.DrawFn) -> AnswerObject:
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    return AnswerObject((x1, y1, x2, y2), ((draw(coord), draw(coord)),))


@settings(max_examples=300, deadline=None)
@given(st.lists(objects(), min_size=1, max_size=6), st.text(max_size=200))
def test_well_formed_answers_round_trip(objs: list[AnswerObject], think: str) -> None:
    think = think.replace("</think>", "").replace("<answer>", "").replace("</answer>", "")
    p = parse_answer(format_list_answer(objs, think))
    assert p.status is Status.OK
    assert list(p.objects) == objs
    assert to_image_pixels(p.objects, (840, 840)) == [ObjectPrompt(o.box, o.points) for o in objs]


@settings(max_examples=500, deadline=None)
@given(st.text(), st.booleans())
def test_parser_never_raises_on_arbitrary_text(text: str, truncated: bool) -> None:
    p = parse_answer(text, truncated=truncated)
    assert isinstance(p.status, Status)
    assert (p.status is Status.OK) == bool(p.objects)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_value)
def test_parser_never_raises_on_arbitrary_json(value: object) -> None:
    p = parse_answer(f"<think>t</think><answer>{json.dumps(value)}</answer>")
    for o in p.objects:
        assert o.box[0] <= o.box[2] and o.box[1] <= o.box[3]
