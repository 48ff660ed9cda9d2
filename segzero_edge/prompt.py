"""The Seg-Zero user prompt (Seg-Zero's ``inference_scripts/infer_multi_object.py``)."""

from __future__ import annotations

MAX_QUERY_CHARS = 1000
"""Longer queries are refused: the prompt budget is 1300 tokens, 900 of them image tokens."""

PROMPT_TEMPLATE_ID = "segzero-v2-multi"

EXAMPLE_ANSWER = (
    '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
)

QUESTION_TEMPLATE = (
    'Please find "{question}" with bboxs and points.'
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
    "i.e., <think> thinking process here </think><answer>{answer}</answer>"
)


def normalise_query(query: str) -> str:
    """Lower-case the query and strip surrounding space and trailing ``."?!``."""
    if not isinstance(query, str):
        raise ValueError(f"query must be a str, got {type(query).__name__}")
    text = query.strip().lower().rstrip('."?!').strip()
    if not text:
        raise ValueError("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query is too long: {len(text)} characters (limit {MAX_QUERY_CHARS})")
    return text


def build_prompt(query: str) -> str:
    """The user-turn text that follows the image."""
    return QUESTION_TEMPLATE.format(question=normalise_query(query), answer=EXAMPLE_ANSWER)
