"""GBNF grammars for the ``<answer>`` of each model family, and the fixed tags around it.

Generation with a grammar is split in two phases (see ``llama_cpp.LlamaCppReasoner``): the
thinking text is free but limited to a token budget and ends at ``</think>``; the answer is
then sampled under the family's grammar (:class:`AnswerGrammar`):

- :func:`answer_grammar` (multi-object family):
  ``<answer>[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}, ...]</answer>``, at most
  ``max_objects`` objects (``[]`` = no object);
- :func:`v1_answer_grammar` (Seg-Zero v1):
  ``<answer>{"bbox": [x1, y1, x2, y2], "points_1": [x, y], "points_2": [x, y]}</answer>``,
  exactly one object.

Both admit the keys of an object in any order, integers in ``0..max_coord`` (no leading zeros)
and, at each separator, nothing, one space or a newline with up to 8 spaces/tabs of
indentation (``json.dumps`` output, compact or pretty-printed, passes). The languages are
finite, so the answer always terminates within ``max_chars`` characters (and as many tokens)
and always parses with :func:`segzero_edge.answer.parse_answer` in strict mode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..layout import DEFAULT_MAX_OBJECTS, REASONER_SIZE

THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

_MAX_INDENT = 8  # a separator may be nothing, one space, or a newline + up to 8 spaces/tabs
_MAX_WS = 1 + _MAX_INDENT
_WS_SLOTS_PER_OBJECT = 20  # separators inside one object, its box and its point


def int_range_rule(max_value: int) -> str:
    """GBNF alternatives matching exactly the decimal integers ``0..max_value``."""
    if not isinstance(max_value, int) or max_value < 0:
        raise ValueError(f"max_value must be a non-negative int, got {max_value!r}")
    digits = str(max_value)
    alts = ['"0"']
    if len(digits) > 1:  # every number with fewer digits than max_value
        alts.append("[1-9]" + (f" [0-9]{{0,{len(digits) - 2}}}" if len(digits) > 2 else ""))
    prefix: list[str] = []
    for i, ch in enumerate(digits):  # numbers with as many digits, digit by digit
        lo, d = (1 if i == 0 else 0), int(ch)
        if d > lo:
            rest = len(digits) - i - 1
            alts.append(" ".join([*prefix, f"[{lo}-{d - 1}]", *["[0-9]"] * rest]))
        prefix.append(f'"{ch}"')
    if max_value > 0:
        alts.append(" ".join(prefix))
    return " | ".join(alts)


@dataclass(frozen=True)
class AnswerGrammar:
    """A family's answer grammar: the GBNF text (root rule ``root``) and a bound on its length."""

    gbnf: str
    max_chars: int


def _dict_rule(fields: list[tuple[str, str]]) -> str:
    """GBNF for a JSON object with exactly ``fields`` (key, value rule), keys in any order."""
    kv = {key: f'"\\"{key}\\"" ws ":" ws {rule}' for key, rule in fields}
    orders = [' ws "," ws '.join(kv[k] for k in perm) for perm in itertools.permutations(kv)]
    return '"{" ws ( ' + " | ".join(f"( {o} )" for o in orders) + ' ) ws "}"'


def _common_rules(max_coord: int) -> list[str]:
    return [
        'box ::= "[" ws int ws "," ws int ws "," ws int ws "," ws int ws "]"',
        'point ::= "[" ws int ws "," ws int ws "]"',
        f"int ::= {int_range_rule(max_coord)}",
        f'ws ::= ( " " | "\\n" [ \\t]{{0,{_MAX_INDENT}}} )?',
        "",
    ]


def answer_grammar(max_objects: int = DEFAULT_MAX_OBJECTS, max_coord: int = REASONER_SIZE) -> str:
    """Multi-object GBNF: optional white space + ``<answer>[objects]</answer>``."""
    if not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive int, got {max_objects!r}")
    obj = _dict_rule([("bbox_2d", "box"), ("point_2d", "point")])
    return "\n".join(
        [
            f'root ::= ws "{ANSWER_OPEN}" ws list ws "{ANSWER_CLOSE}"',
            f'list ::= "[" ws ( obj ( ws "," ws obj ){{0,{max_objects - 1}}} )? ws "]"',
            f"obj ::= {obj}",
            *_common_rules(max_coord),
        ]
    )


def max_answer_chars(max_objects: int = DEFAULT_MAX_OBJECTS, max_coord: int = REASONER_SIZE) -> int:
    """An upper bound on the characters :func:`answer_grammar` can produce."""
    ws, digits = _MAX_WS, len(str(max_coord))
    obj = len('{"bbox_2d":[,,,],"point_2d":[,]}') + 6 * digits + _WS_SLOTS_PER_OBJECT * ws
    lst = 2 + 2 * ws + max_objects * obj + (max_objects - 1) * (1 + 2 * ws)
    return len(ANSWER_OPEN) + len(ANSWER_CLOSE) + 3 * ws + lst


def list_answer_grammar(
    max_objects: int = DEFAULT_MAX_OBJECTS, max_coord: int = REASONER_SIZE
) -> AnswerGrammar:
    """The multi-object family's :class:`AnswerGrammar`."""
    return AnswerGrammar(
        answer_grammar(max_objects, max_coord), max_answer_chars(max_objects, max_coord)
    )


def v1_answer_grammar(max_coord: int = REASONER_SIZE) -> AnswerGrammar:
    """Seg-Zero v1's :class:`AnswerGrammar`: one ``{"bbox", "points_1", "points_2"}`` object."""
    obj = _dict_rule([("bbox", "box"), ("points_1", "point"), ("points_2", "point")])
    gbnf = "\n".join(
        [
            f'root ::= ws "{ANSWER_OPEN}" ws obj ws "{ANSWER_CLOSE}"',
            f"obj ::= {obj}",
            *_common_rules(max_coord),
        ]
    )
    ws, digits = _MAX_WS, len(str(max_coord))
    # 12 separators in the object, 8 in the box, 4 in each point; 3 around the object
    body = len('{"bbox":[,,,],"points_1":[,],"points_2":[,]}') + 8 * digits + 28 * ws
    return AnswerGrammar(gbnf, len(ANSWER_OPEN) + len(ANSWER_CLOSE) + 3 * ws + body)
