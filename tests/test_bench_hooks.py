"""The benchmark's hooks on the real llama.cpp reasoner: forced decode length, canned answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segzero_bench.hooks import CannedAnswer, FixedLengthReasoner
from segzero_bench.workload import BenchInputs
from segzero_edge.answer import parse_answer
from segzero_edge.families import build_prompt
from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner
from segzero_edge.types import Status


def test_fixed_length_reasoner_decodes_exactly_the_budget(tiny_bundle: Path) -> None:
    reasoner = FixedLengthReasoner(
        tiny_bundle / "reasoner.gguf", tiny_bundle / "mmproj.gguf", tokens=40, n_threads=1
    )
    try:
        assert reasoner.fixed_length and not reasoner.use_grammar  # the reasoner's own option
        image = np.random.default_rng(3).integers(0, 256, (840, 840, 3), np.uint8)
        prompt = build_prompt("the red circle", "multi-object")
        canned = CannedAnswer(reasoner, BenchInputs().answer(3))
        out = canned.generate(image, prompt)
        forced = list(reasoner.last_stats.tokens)
        # the same reasoner without the option: greedy, ends at end-of-generation or </answer>
        reasoner.fixed_length = False
        free = reasoner.generate(image, prompt)
        natural = list(reasoner.last_stats.tokens)
        next_is_eog = len(natural) < 40 and reasoner.engine.is_eog(forced[len(natural)])
    finally:
        reasoner.close()
    assert out.n_generated_tokens == 40 == len(forced) and canned.last is not None
    assert canned.last.truncated and canned.last.text != out.text
    assert forced[: len(natural)] == natural  # the same greedy tokens, then past its end
    assert free.truncated or next_is_eog or "</answer>" in free.text
    assert {"vision_encode", "prefill", "decode"} <= set(out.timings)
    parsed = parse_answer(out.text)
    assert parsed.status is Status.OK and len(parsed.objects) == 3
    assert list(parsed.objects) == BenchInputs().objects(3)


def test_fixed_length_needs_grammar_off(tiny_bundle: Path) -> None:
    files = tiny_bundle / "reasoner.gguf", tiny_bundle / "mmproj.gguf"
    with pytest.raises(ValueError, match="fixed_length=True decodes without the answer grammar"):
        LlamaCppReasoner(*files, fixed_length=True, grammar=True)
