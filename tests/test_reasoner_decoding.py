"""The reasoner's decoding policy on the tiny bundle's real GGUFs: end-of-generation.

A one-string grammar (``root ::= "a"``) makes the next token after ``a`` an end-of-generation
token for certain (llama.cpp's grammar sampler then allows only those), so the plain greedy loop
must stop there and the fixed-length decode (the benchmark's ``fixed_length`` option) must not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner
from segzero_edge.reasoner.llama_decoding import Decoder, GenerationStats
from segzero_edge.reasoner.llama_objects import GreedySampler
from tests.fixtures.reasoner_vision import open_reasoner

pytestmark = pytest.mark.runtime

ONLY_A = 'root ::= "a"'


@pytest.fixture(scope="module")
def reasoner(tiny_bundle: Path) -> Iterator[LlamaCppReasoner]:
    r = open_reasoner(tiny_bundle / "reasoner.gguf", tiny_bundle / "mmproj.gguf")
    yield r
    r.close()


def _run(r: LlamaCppReasoner, *, fixed_length: bool) -> tuple[list[int], str, Decoder]:
    engine = r.engine
    engine.clear()
    prompt = engine.tokenize("the knife")
    engine.decode(prompt, 0)
    decoder = Decoder(engine, ONLY_A, 8, GenerationStats())
    with GreedySampler(engine.model.vocab, ONLY_A) as chain:
        _, sampled, why = decoder.run(chain, len(prompt), 5, (), fixed_length=fixed_length)
    return [t for t, _ in sampled], why, decoder


def test_greedy_stops_at_end_of_generation(reasoner: LlamaCppReasoner) -> None:
    tokens, why, decoder = _run(reasoner, fixed_length=False)
    assert why == "eog" and tokens == reasoner.tokenize("a")
    assert decoder.out == b"a" and decoder.stats.tokens == tokens


def test_fixed_length_decodes_past_end_of_generation(reasoner: LlamaCppReasoner) -> None:
    tokens, why, decoder = _run(reasoner, fixed_length=True)
    assert why == "budget" and len(tokens) == 5 == len(decoder.stats.tokens)
    assert tokens[:1] == reasoner.tokenize("a")
    assert all(reasoner.engine.is_eog(t) for t in tokens[1:])


def test_fixed_length_ignores_stop_strings(reasoner: LlamaCppReasoner) -> None:
    engine = reasoner.engine
    for fixed, want in ((False, "stop"), (True, "budget")):
        engine.clear()
        prompt = engine.tokenize("the knife")
        engine.decode(prompt, 0)
        decoder = Decoder(engine, ONLY_A, 8, GenerationStats())
        with GreedySampler(engine.model.vocab, ONLY_A) as chain:
            _, _, why = decoder.run(chain, len(prompt), 3, (b"a",), fixed_length=fixed)
        assert why == want
