"""Query normalisation for the user prompt (the prompt itself: :mod:`segzero_edge.families`).

A family's prompt is ``template.format(Question=normalise_query(query, chars), Answer=example)``
as its reference script writes it.
"""

from __future__ import annotations

MAX_QUERY_CHARS = 1000
"""Longer queries are refused: the prompt budget is 1300 tokens, 900 of them image tokens."""


def normalise_query(query: str, strip_chars: str = '."?!') -> str:
    """``query.lower().strip(strip_chars)``, as the reference scripts write it into the prompt.

    Nothing else is changed (surrounding white space stays, as in the reference). Raises
    ``ValueError`` for a non-``str`` query, one with nothing but white space left, or one
    longer than :data:`MAX_QUERY_CHARS` characters.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a str, got {type(query).__name__}")
    text = query.lower().strip(strip_chars)
    if not text.strip():
        raise ValueError("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query is too long: {len(text)} characters (limit {MAX_QUERY_CHARS})")
    return text
