"""LlamaCppReasoner end to end on the tiny random Qwen2.5-VL (F16 text GGUF + F16 mmproj).

A random model never writes a sensible answer on its own, so these tests check the runtime's
contract: protocol, token counts, timings, budgets, truncation, determinism, and that with
the grammar the output always parses (status ok / no_object, never unparseable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge.answer import parse_answer
from segzero_edge.backends import Reasoner, ReasonerOutput
from segzero_edge.families import build_prompt
from segzero_edge.types import Status
from tests.fixtures.reasoner_vision import make_test_image, open_reasoner

QUERIES = ("the red car on the left", "what can be used to cut the bread?", "the tallest tree")


@pytest.fixture(scope="module")
def reasoner(tiny_text_ggufs: dict[str, Path], tiny_mmproj: Path) -> Any:
    r = open_reasoner(tiny_text_ggufs["F16"], tiny_mmproj, max_new_tokens=64, think_budget=24)
    yield r
    r.close()


def _check_timings(out: ReasonerOutput, wall: float | None = None) -> None:
    """Stage seconds, and the prefix cache flag: a hit (the same image as an earlier call)
    skips the vision encoder."""
    assert set(out.timings) == {"vision_encode", "prefill", "decode", "reasoner_cache_hit"}
    hit = out.timings["reasoner_cache_hit"]
    assert hit in (0.0, 1.0), out.timings
    stages = {k: v for k, v in out.timings.items() if k != "reasoner_cache_hit"}
    assert stages["prefill"] > 0 and stages["decode"] > 0, out.timings
    assert (stages["vision_encode"] > 0) is (hit == 0.0), out.timings
    if wall is not None:
        assert sum(stages.values()) <= wall


def test_generate_with_grammar_returns_a_parseable_answer(
    reasoner: Any, hf_vision_reference: dict[str, Any]
) -> None:
    import time

    assert isinstance(reasoner, Reasoner)
    ref = hf_vision_reference
    t0 = time.perf_counter()
    out = reasoner.generate(ref["image"], ref["prompt"])
    wall = time.perf_counter() - t0
    stats = reasoner.last_stats
    parsed = parse_answer(out.text, out.truncated)
    print(
        f"\ngrammar run: {out.n_prompt_tokens} prompt + {out.n_generated_tokens} generated "
        f"tokens, timings {out.timings}, wall {wall:.2f}s, stats {stats}, "
        f"status {parsed.status.value}, text {out.text[-120:]!r}"
    )
    assert isinstance(out, ReasonerOutput)
    assert out.n_prompt_tokens == len(ref["input_ids"])
    assert stats.n_image_tokens == 900
    assert stats.think_tokens <= reasoner.think_budget
    assert out.n_generated_tokens == stats.think_tokens + stats.forced_tokens + stats.answer_tokens
    assert "</think>" in out.text and out.text.rstrip().endswith("</answer>")
    assert parsed.status in (Status.OK, Status.NO_OBJECT), parsed
    _check_timings(out, wall)


def test_plain_greedy_hits_the_budget(reasoner: Any, hf_vision_reference: dict[str, Any]) -> None:
    ref = hf_vision_reference
    reasoner.use_grammar, budget = False, reasoner.max_new_tokens
    try:
        reasoner.max_new_tokens = 12
        out = reasoner.generate(ref["image"], ref["prompt"])
    finally:
        reasoner.use_grammar, reasoner.max_new_tokens = True, budget
    print(
        f"\nplain greedy, budget 12: truncated={out.truncated}, "
        f"{out.n_generated_tokens} tokens, text {out.text!r}"
    )
    assert out.truncated and out.n_generated_tokens == 12
    assert parse_answer(out.text, out.truncated).status is Status.TRUNCATED
    _check_timings(out)


def test_grammar_output_always_parses_and_is_deterministic(reasoner: Any) -> None:
    texts = []
    for seed, query in enumerate(QUERIES):
        out = reasoner.generate(make_test_image(seed + 1), build_prompt(query, "multi-object"))
        parsed = parse_answer(out.text, out.truncated)
        print(
            f"\n{query!r}: status {parsed.status.value}, objects {len(parsed.objects)}, "
            f"truncated={out.truncated}, answer {parsed.answer_text!r}"
        )
        assert parsed.status in (Status.OK, Status.NO_OBJECT), out.text
        texts.append(out.text)
    again = reasoner.generate(make_test_image(1), build_prompt(QUERIES[0], "multi-object")).text
    assert again == texts[0], "greedy generation is not repeatable (KV cache not reset?)"


def test_think_budget_is_enforced(reasoner: Any, hf_vision_reference: dict[str, Any]) -> None:
    ref = hf_vision_reference
    old = reasoner.think_budget
    try:
        reasoner.think_budget = 5
        out = reasoner.generate(ref["image"], ref["prompt"])
    finally:
        reasoner.think_budget = old
    stats = reasoner.last_stats
    print(f"\nthink budget 5: {stats}, truncated={out.truncated}, text {out.text!r}")
    assert stats.think_tokens == 5 and stats.think_truncated and out.truncated
    assert parse_answer(out.text, out.truncated).status in (Status.OK, Status.NO_OBJECT)


def test_bad_inputs_give_clear_errors(reasoner: Any, tiny_mmproj: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="840"):
        reasoner.generate(np.zeros((100, 100, 3), np.uint8), "x")
    with pytest.raises(ValueError, match="uint8"):
        reasoner.generate(np.zeros((840, 840, 3), np.float32), "x")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        open_reasoner(tmp_path / "missing.gguf", tiny_mmproj)
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    from segzero_edge.reasoner.llama_cpp import ReasonerLoadError

    with pytest.raises(ReasonerLoadError, match="could not load"):
        open_reasoner(bogus, tiny_mmproj)
