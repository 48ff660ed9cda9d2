"""The Seg-Zero prompt and query validation."""

from __future__ import annotations

import pytest

from segzero_edge.families import build_prompt
from segzero_edge.prompt import MAX_QUERY_CHARS, check_query, normalise_query

pytestmark = pytest.mark.runtime


def test_prompt_text_is_seg_zero_template() -> None:
    # the reference's .lower().strip(".\"?!") only: surrounding spaces stay
    p = build_prompt("  The thing I can use to cut the BREAD?! ", "multi-object")
    assert p.startswith('Please find "  the thing i can use to cut the bread?! " with bboxs')
    p = build_prompt("The thing I can use to cut the BREAD?!", "multi-object")
    assert p.startswith('Please find "the thing i can use to cut the bread" with bboxs and points.')
    assert "matched object(s).Output the thinking" in p  # sentences join with no spaces
    assert p.endswith(
        '<answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
        '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'
    )


@pytest.mark.parametrize("bad", ["", "   ", "?!.", 42, None])
def test_empty_or_non_text_query_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="query"):
        normalise_query(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "is empty"),
        (" \t\n", "is empty"),
        (7, "must be a str, got int"),
        (
            "knife\udcff",
            r"is not valid text \(not valid UTF-8\): lone surrogate '\\udcff' at index 5",
        ),
    ],
)
def test_one_query_rule_for_every_way_in(bad: object, message: str) -> None:
    """The API's prompt, the ROS node's queries and the CLI refuse a query by the same rule."""
    from segzero_edge.ros.processor import check_queries

    with pytest.raises(ValueError, match=f"^query {message}"):
        check_query(bad)
    with pytest.raises(ValueError, match=f"^query {message}"):
        normalise_query(bad)  # type: ignore[arg-type]
    if isinstance(bad, str):
        with pytest.raises(ValueError, match=f"^a query {message}"):
            check_queries([bad])
    assert check_query(" knife ") == " knife "


def test_huge_query_is_refused_with_numbers() -> None:
    with pytest.raises(ValueError, match=f"limit {MAX_QUERY_CHARS}"):
        build_prompt("a" * (MAX_QUERY_CHARS + 1), "multi-object")


# ReasonSeg-style queries; those ending in "?", "!" or '"' are where the two multi-object
# reference scripts build different prompts
VARIANT_QUERIES = [
    "What can I use to cut the bread?",
    "the knife on the left.",
    "Where should I put the dirty dishes?",
    "Find the thing that keeps food cold!",
    '"the red cup"',
    "The person who is most likely the teacher.",
    "what is used for drying hands?!",
    "a chair",
]


def test_multi_object_prompt_variants_follow_their_scripts() -> None:
    """``multi-object`` follows evaluation_visionreasoner.py (strips . " ? !),
    ``multi-object-infer`` infer_multi_object.py (strips only .); byte for byte against each
    script's ``QUESTION_TEMPLATE.format(Question=..., Answer=...)`` (tests/fixtures/families.py)."""
    from segzero_edge.families import MULTI_OBJECT, MULTI_OBJECT_INFER, get_family
    from tests.fixtures.families import REFERENCE

    assert MULTI_OBJECT.prompt_reference.endswith("evaluation_scripts/evaluation_visionreasoner.py")
    assert MULTI_OBJECT_INFER.prompt_reference.endswith("inference_scripts/infer_multi_object.py")
    assert get_family("multi-object-infer") is MULTI_OBJECT_INFER
    differ = 0
    for q in VARIANT_QUERIES:
        evaluation, infer = MULTI_OBJECT.build_prompt(q), MULTI_OBJECT_INFER.build_prompt(q)
        assert evaluation == REFERENCE["multi-object"].prompt(q), q
        assert infer == REFERENCE["multi-object-infer"].prompt(q), q
        ends = (q.rstrip(".")[-1], q[0])
        assert (evaluation != infer) == any(c in '?!"' for c in ends), q
        differ += evaluation != infer
    assert differ == 5
    p = MULTI_OBJECT_INFER.build_prompt("What can I use to cut the bread?")
    assert p.startswith('Please find "what can i use to cut the bread?" with bboxs and points.')
    # the same checkpoint: answer, mapping, SAM2 prompt, grammar and evaluation are shared
    for field in ("schema", "mapping", "sam2", "example_answer", "question_template"):
        assert getattr(MULTI_OBJECT_INFER, field) == getattr(MULTI_OBJECT, field), field
    assert MULTI_OBJECT_INFER.answer_grammar() == MULTI_OBJECT.answer_grammar()
    assert MULTI_OBJECT_INFER.evaluation_reference == MULTI_OBJECT.evaluation_reference
    assert MULTI_OBJECT_INFER.checkpoints == ()  # hub ids still resolve to multi-object
