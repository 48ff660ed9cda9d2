"""The benchmark's hooks on the real llama.cpp reasoner: forced decode length, canned answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
        eos = int(reasoner._ll.llama_vocab_eos(reasoner._vocab))
        # the override is what the runtime's loop consults
        assert LlamaCppReasoner._is_eog(reasoner, eos) and not reasoner._is_eog(eos)
        image = np.random.default_rng(3).integers(0, 256, (840, 840, 3), np.uint8)
        canned = CannedAnswer(reasoner, BenchInputs().answer(3))
        out = canned.generate(image, build_prompt("the red circle", "multi-object"))
    finally:
        reasoner.close()
    assert out.n_generated_tokens == 40 and canned.last is not None
    assert canned.last.truncated and canned.last.text != out.text
    assert {"vision_encode", "prefill", "decode"} <= set(out.timings)
    parsed = parse_answer(out.text)
    assert parsed.status is Status.OK and len(parsed.objects) == 3
    assert list(parsed.objects) == BenchInputs().objects(3)
