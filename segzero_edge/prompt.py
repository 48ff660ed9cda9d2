"""The query rule: what a query must be (:func:`check_query`) and how it enters the prompt
(:func:`normalise_query`; the prompt itself: :mod:`segzero_edge.families`).

Every way a query comes in (the Python API, the CLI, a ROS topic or parameter) is checked by
:func:`check_query`. A family's prompt is
``template.format(Question=normalise_query(query, chars), Answer=example)`` as its reference
script writes it.
"""

from __future__ import annotations

MAX_QUERY_CHARS = 1000
"""Longer queries are refused: the prompt budget is 1300 tokens, 900 of them image tokens."""


def check_query(query: object, what: str = "query") -> str:
    """``query`` when it is a query: a ``str``, valid text (encodable as UTF-8: no lone
    surrogate, which is what a non-UTF-8 byte on the command line becomes) and not blank.

    Returns ``query`` unchanged. Raises ``ValueError`` naming ``what`` otherwise (for text
    that is not valid, the first lone surrogate and its index).
    """
    if not isinstance(query, str):
        raise ValueError(f"{what} must be a str, got {type(query).__name__}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text (not valid UTF-8): lone surrogate {query[e.start]!r} at "
            f"index {e.start} (a byte of another encoding on the command line?)"
        ) from None
    if not query.strip():
        raise ValueError(f"{what} is empty")
    return query


def normalise_query(query: str, strip_chars: str = '."?!') -> str:
    """``query.lower().strip(strip_chars)``, as the reference scripts write it into the prompt.

    Nothing else is changed (surrounding white space stays, as in the reference). Raises
    ``ValueError`` for a query :func:`check_query` refuses, one with nothing but white space
    left after the strip, or one longer than :data:`MAX_QUERY_CHARS` characters.
    """
    text = check_query(query).lower().strip(strip_chars)
    if not text.strip():
        raise ValueError("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query is too long: {len(text)} characters (limit {MAX_QUERY_CHARS})")
    return text
