"""The Seg-Zero prompt and query validation."""

from __future__ import annotations

import pytest

from segzero_edge.families import build_prompt
from segzero_edge.prompt import MAX_QUERY_CHARS, normalise_query

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


def test_huge_query_is_refused_with_numbers() -> None:
    with pytest.raises(ValueError, match=f"limit {MAX_QUERY_CHARS}"):
        build_prompt("a" * (MAX_QUERY_CHARS + 1), "multi-object")
