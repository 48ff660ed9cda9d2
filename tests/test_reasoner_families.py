"""Each family's reasoner input and answer grammar against its reference script.

- Chat text: the runtime's full chat text (the parts it tokenizes, ``chat_parts``, joined, with
  the image's place as ``<|vision_start|><|image_pad|><|vision_end|>``) is byte-identical to
  what the reference builds with transformers' processor (``apply_chat_template`` on the
  reference's message), and the token ids llama.cpp evaluates (``prompt_tokens``: libmtmd's
  chunks, the image chunk's 900 tokens as ``<|image_pad|>``) equal the processor's
  ``input_ids`` for the 840 x 840 image. The reference scripts get the
  image through ``qwen_vl_utils.process_vision_info``, which leaves an 840 x 840 image as it is
  (840 is a multiple of 28 within its pixel limits); the processor is given it directly.
- Grammar: every well-formed answer the reference parser accepts is allowed unchanged by the
  family's grammar (a property test; ``tests.fixtures.reasoner.answer_allowed`` walks
  llama.cpp's own grammar sampler over the answer's tokens). Well-formed: the family's schema,
  integer coordinates in 0..840, any key order, written by ``json.dumps`` compact, with default
  separators or pretty-printed (up to 8 columns of indentation at the deepest level), at most
  ``max_objects`` (8) objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_edge.families import FAMILIES, get_family
from segzero_edge.reasoner.chat import chat_parts
from segzero_edge.reasoner.grammar import DEFAULT_MAX_OBJECTS
from tests.fixtures.families import REFERENCE
from tests.fixtures.reasoner import answer_allowed
from tests.fixtures.reasoner_vision import make_test_image, open_reasoner

QUERIES = (
    "The thing I can use to cut the BREAD.",
    'the "red" car on the left?!',
    "  what can I sit on. ",
    "Ünïcödé 東京 😀...",
)
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def reasoners(tiny_text_ggufs: dict[str, Path], tiny_mmproj: Path) -> Any:
    """One tiny F16 reasoner per family, each with its family's answer grammar."""
    out = {
        name: open_reasoner(tiny_text_ggufs["F16"], tiny_mmproj, answer_grammar=f.answer_grammar())
        for name, f in FAMILIES.items()
    }
    yield out
    for r in out.values():
        r.close()


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen_dir)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chat_text_and_token_ids_equal_the_reference(
    family: str, processor: Any, reasoners: dict[str, Any]
) -> None:
    from PIL import Image

    image = make_test_image(3)
    pil = Image.fromarray(image)
    for query in QUERIES:
        ref_text = REFERENCE[family].prompt(query)
        message = [
            {
                "role": "user",
                "content": [{"type": "image", "image": pil}, {"type": "text", "text": ref_text}],
            }
        ]
        want = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        prompt = get_family(family).build_prompt(query)
        got = "".join(VISION if kind == "image" else text for kind, text in chat_parts(prompt))
        assert got == want, f"{family} {query!r}"
        want_ids = processor(text=[want], images=[pil], return_tensors="np")["input_ids"][0]
        pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        got_ids = [pad if t == -1 else t for t in reasoners[family].prompt_tokens(prompt)]
        print(f"{family} {query!r}: {len(got_ids)} tokens, equal={got_ids == want_ids.tolist()}")
        assert got_ids == want_ids.tolist(), f"{family} {query!r}"


# ---------------------------------------------------------------- grammar vs reference parser

coord = st.integers(0, 840)
SEPARATORS = [(", ", ": "), (",", ":")]


@st.composite
def json_style(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    """``json.dumps`` options: one line (two separator styles) or pretty-printed (json's own
    separators for indented output, so no line ends in a space)."""
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t", " " * (8 // depth)]))
    seps = draw(st.sampled_from(SEPARATORS)) if indent is None else (",", ": ")
    return {"indent": indent, "separators": seps}


def _ordered(draw: st.DrawFn, item: dict[str, Any]) -> dict[str, Any]:
    keys = draw(st.permutations(list(item)))
    return {k: item[k] for k in keys}


@st.composite
def v1_answers(draw: st.DrawFn) -> str:
    item = {
        "bbox": draw(st.lists(coord, min_size=4, max_size=4)),
        "points_1": draw(st.lists(coord, min_size=2, max_size=2)),
        "points_2": draw(st.lists(coord, min_size=2, max_size=2)),
    }
    body = json.dumps(_ordered(draw, item), **draw(json_style(2)))
    pad = draw(st.sampled_from(["", "\n", " "]))
    return f"<answer>{pad}{body}{pad}</answer>"


@st.composite
def multi_answers(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(0, DEFAULT_MAX_OBJECTS))):
        item = {
            "bbox_2d": draw(st.lists(coord, min_size=4, max_size=4)),
            "point_2d": draw(st.lists(coord, min_size=2, max_size=2)),
        }
        items.append(_ordered(draw, item))
    body = json.dumps(items, **draw(json_style(3)))
    pad = draw(st.sampled_from(["", "\n", " "]))
    return f"<answer>{pad}{body}{pad}</answer>"


def _check(reasoners: dict[str, Any], family: str, answer: str) -> None:
    text = f"<think>the thing</think>{answer}"
    REFERENCE[family].objects(text, (840, 840))  # the reference parser accepts it (no raise)
    assert answer_allowed(reasoners[family], answer), f"{family} grammar refuses {answer!r}"
    other = next(n for n in FAMILIES if n != family)
    if answer.count("bbox"):  # the other family's grammar refuses this schema
        assert not answer_allowed(reasoners[other], answer), f"{other} grammar allows {answer!r}"


@settings(max_examples=60, deadline=None)
@given(v1_answers())
def test_v1_grammar_allows_every_well_formed_reference_answer(
    reasoners: dict[str, Any], answer: str
) -> None:
    _check(reasoners, "segzero-v1", answer)


@settings(max_examples=60, deadline=None)
@given(multi_answers())
def test_multi_object_grammar_allows_every_well_formed_reference_answer(
    reasoners: dict[str, Any], answer: str
) -> None:
    _check(reasoners, "multi-object", answer)


def test_grammars_refuse_what_the_schema_does_not_have(reasoners: dict[str, Any]) -> None:
    v1 = reasoners["segzero-v1"]
    for bad in (
        "<answer>[]</answer>",  # v1 always names one object
        '<answer>{"bbox": [1,2,3,4], "points_1": [1,2]}</answer>',  # one point
        '<answer>{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [1,2], "x": 1}</answer>',
        '<answer>{"bbox": [1,2,3,841], "points_1": [1,2], "points_2": [1,2]}</answer>',
        "<answer>{'bbox': [1,2,3,4], 'points_1': [1,2], 'points_2': [1,2]}</answer>",
    ):
        assert not answer_allowed(v1, bad), bad
    grammar = get_family("segzero-v1").answer_grammar()
    longest = json.dumps(
        {"bbox": [840] * 4, "points_1": [840] * 2, "points_2": [840] * 2}, indent="\t" * 4
    )
    assert answer_allowed(v1, f"<answer>{longest}</answer>")
    assert len(f"<answer>{longest}</answer>") <= grammar.max_chars
    assert np.isfinite(grammar.max_chars)
