"""The answer GBNF: what it admits, its length bound, and its effect on well-formed answers.

Grammar effect: the grammar only masks tokens and decoding is greedy, so a model whose greedy
answer is X produces X unchanged with the grammar on exactly when every token of X is allowed
(``tests.fixtures.reasoner.answer_allowed``). The test prints the fraction of typical well-formed
answers that pass unchanged (all in-schema forms) and which off-schema forms would be changed.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from segzero_edge.answer import AnswerObject, format_list_answer, parse_answer
from segzero_edge.families import MULTI_OBJECT
from segzero_edge.reasoner import grammar as gbnf
from segzero_edge.types import Status
from tests.fixtures.reasoner import answer_allowed
from tests.fixtures.reasoner_vision import open_reasoner

IN_SCHEMA = {
    "prompt example": f"<answer>{MULTI_OBJECT.example_answer}</answer>",
    "compact": '<answer>[{"bbox_2d":[10,100,200,210],"point_2d":[30,110]}]</answer>',
    "spaced": '<answer>[{"bbox_2d": [10, 100, 200, 210], "point_2d": [30, 110]}]</answer>',
    "newline before": '\n<answer>[{"bbox_2d": [0,0,840,840], "point_2d": [420,420]}]</answer>',
    "pretty printed": (
        '<answer>\n[\n  {\n    "bbox_2d": [10, 100, 200, 210],\n    "point_2d": [30, 110]\n'
        "  }\n]\n</answer>"
    ),
    "tab indented": '<answer>[\n\t{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}\n]</answer>',
    "no object": "<answer>[]</answer>",
}
OFF_SCHEMA = {
    "legacy single dict": '<answer>{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [2,3]}'
    "</answer>",
    "extra label key": '<answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3], "label": "car"}]'
    "</answer>",
    "markdown fence": '<answer>```json\n[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}]\n```</answer>',
    "float coordinate": '<answer>[{"bbox_2d": [1.5,2,3,4], "point_2d": [2,3]}]</answer>',
    "out of frame": '<answer>[{"bbox_2d": [1,2,3,841], "point_2d": [2,3]}]</answer>',
    "negative": '<answer>[{"bbox_2d": [-1,2,3,4], "point_2d": [2,3]}]</answer>',
    "leading zero": '<answer>[{"bbox_2d": [01,2,3,4], "point_2d": [2,3]}]</answer>',
    "missing point": '<answer>[{"bbox_2d": [1,2,3,4]}]</answer>',
}


@pytest.fixture(scope="module")
def checker(tiny_text_ggufs: dict[str, Path], tiny_mmproj: Path) -> Any:
    r = open_reasoner(tiny_text_ggufs["F16"], tiny_mmproj)
    yield r
    r.close()


def test_int_rule_matches_exactly_the_frame_range() -> None:
    for top in (0, 7, 10, 99, 100, 839, 840, 1234):
        rx = re.compile(gbnf.int_range_rule(top).replace('"', "").replace(" ", ""))
        ok = [n for n in range(0, 2000) if rx.fullmatch(str(n))]
        assert ok == list(range(top + 1)), f"int rule for 0..{top} admits {ok[:3]}..{ok[-3:]}"
    assert not re.fullmatch(gbnf.int_range_rule(840).replace('"', "").replace(" ", ""), "07")


def test_grammar_effect_on_well_formed_answers(checker: Any) -> None:
    kept = {name: answer_allowed(checker, text) for name, text in IN_SCHEMA.items()}
    changed = {name: not answer_allowed(checker, text) for name, text in OFF_SCHEMA.items()}
    rng = random.Random(0)
    generated = []
    for _ in range(40):
        objs = []
        for _ in range(rng.randint(0, gbnf.DEFAULT_MAX_OBJECTS)):
            x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
            x2, y2 = rng.randint(x1, 840), rng.randint(y1, 840)
            objs.append(AnswerObject((x1, y1, x2, y2), (((x1 + x2) // 2, (y1 + y2) // 2),)))
        text = format_list_answer(objs, "thinking")
        generated.append(answer_allowed(checker, text[text.index("<answer>") :]))
    n_ok = sum(kept.values()) + sum(generated)
    n_all = len(kept) + len(generated)
    print(
        f"\ngrammar effect: {n_ok}/{n_all} well-formed answers pass unchanged "
        f"({len(generated)} format_list_answer outputs with 0-{gbnf.DEFAULT_MAX_OBJECTS} objects, "
        f"{len(kept)} hand-written forms: {kept}); off-schema forms the grammar would "
        f"change: {changed}"
    )
    assert all(kept.values()) and all(generated)
    assert all(changed.values())


def test_max_objects_is_enforced(checker: Any) -> None:
    obj = AnswerObject((1, 2, 3, 4), ((2, 3),))
    at_limit = format_list_answer([obj] * gbnf.DEFAULT_MAX_OBJECTS)
    over = format_list_answer([obj] * (gbnf.DEFAULT_MAX_OBJECTS + 1))
    assert answer_allowed(checker, at_limit[at_limit.index("<answer>") :])
    assert not answer_allowed(checker, over[over.index("<answer>") :])
    assert parse_answer(over).status is Status.OK  # the parser itself has no such limit


def test_longest_answer_fits_the_bound(checker: Any) -> None:
    """An answer using every white-space slot at its longest is allowed and meets the bound."""
    ws = "\n" + "\t" * 8

    def arr(n: int) -> str:
        return "[" + ws + (ws + "," + ws).join(["840"] * n) + ws + "]"

    obj = (
        "{"
        + ws
        + '"bbox_2d"'
        + ws
        + ":"
        + ws
        + arr(4)
        + ws
        + ","
        + ws
        + '"point_2d"'
        + ws
        + ":"
        + ws
        + arr(2)
        + ws
        + "}"
    )
    lst = "[" + ws + (ws + "," + ws).join([obj] * gbnf.DEFAULT_MAX_OBJECTS) + ws + "]"
    text = ws + "<answer>" + ws + lst + ws + "</answer>"
    print(f"\nlongest answer {len(text)} chars, bound {gbnf.max_answer_chars()}")
    assert len(text) == gbnf.max_answer_chars()
    assert answer_allowed(checker, text)
    assert parse_answer("<think></think>" + text).status is Status.OK


def test_bad_grammar_arguments() -> None:
    with pytest.raises(ValueError, match="max_objects"):
        gbnf.answer_grammar(max_objects=0)
    with pytest.raises(ValueError, match="max_value"):
        gbnf.int_range_rule(-1)
