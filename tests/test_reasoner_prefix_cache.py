"""The reasoner's per-frame prefix cache on the tiny random Qwen2.5-VL (Q4_K_M text + F16 mmproj).

Exactness: greedy generation with the cache is token-for-token the generation of a reasoner
without it (a cold run: empty context, image encoded and evaluated again), over several frames
and queries, interleaved, with evictions, grammar on and off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge.families import MULTI_OBJECT
from segzero_edge.image import frame_key
from segzero_edge.reasoner.prefix_cache import PrefixCache, PrefixState
from tests.fixtures.reasoner_vision import make_test_image, open_reasoner

QUERIES = ("the cup", "where to grasp it", "something to put it on")
BUDGET = {"max_new_tokens": 24, "think_budget": 12, "max_objects": 1}  # short answers
# tiny model: 2 layers x (K + V) x 2 KV heads x 64 x f16 = 1024 bytes per KV cell
TINY_KV_BYTES_PER_TOKEN = 2 * 2 * 2 * 64 * 2
IMAGE_TOKENS, IMAGE_SIDE = 900, 30  # 840 x 840: 30 x 30 merged patches


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [make_test_image(seed) for seed in (11, 12, 13)]


@pytest.fixture(scope="module")
def pair(tiny_text_ggufs: dict[str, Path], tiny_mmproj: Path) -> Any:
    """(cached, cold): the cache holds two tiny frames (~0.95 MiB each), the cold one none."""
    gguf = tiny_text_ggufs["Q4_K_M"]
    cached = open_reasoner(gguf, tiny_mmproj, prefix_cache_mb=2.0, **BUDGET)
    cold = open_reasoner(gguf, tiny_mmproj, prefix_cache_mb=0, **BUDGET)
    yield cached, cold
    cached.close()
    cold.close()


# frame index, query index, whether the prefix comes from the cache (2 frames fit)
SCHEDULE = [
    (0, 0, False),
    (0, 1, True),
    (1, 0, False),
    (0, 2, True),
    (2, 1, False),  # evicts frame 1 (least recently used)
    (1, 2, False),  # evicted: evaluated again, evicts frame 0
    (2, 0, True),
]


@pytest.mark.parametrize("grammar", [True, False], ids=["grammar", "plain"])
def test_cached_generation_equals_cold_generation(
    pair: Any, frames: list[np.ndarray], grammar: bool
) -> None:
    cached, cold = pair
    cached.prefix_cache.clear()
    cached.use_grammar = cold.use_grammar = grammar
    evictions0 = cached.prefix_cache.evictions
    n_tokens = 0
    for f, q, hit in SCHEDULE:
        prompt = MULTI_OBJECT.build_prompt(QUERIES[q])
        # a copy: the cache keys frames by content, never by object identity
        out = cached.generate(frames[f].copy(), prompt)
        got = list(cached.last_stats.tokens)
        ref = cold.generate(frames[f], prompt)
        want = list(cold.last_stats.tokens)
        assert cold.last_stats.prefix_cache_hit is False
        print(
            f"frame {f} query {q!r}: hit={out.timings['reasoner_cache_hit']:.0f} "
            f"prefill {out.timings['prefill'] * 1e3:.1f} ms (cold "
            f"{(ref.timings['prefill'] + ref.timings['vision_encode']) * 1e3:.1f} ms), "
            f"{len(got)} tokens, cache {len(cached.prefix_cache)} frames "
            f"{cached.prefix_cache.nbytes} bytes"
        )
        assert out.timings["reasoner_cache_hit"] == float(hit), (f, q)
        assert cached.last_stats.prefix_cache_hit is hit
        assert ref.timings["reasoner_cache_hit"] == 0.0
        assert got == want, f"frame {f} query {q}: tokens differ from the cold run"
        assert out.text == ref.text and out.truncated == ref.truncated
        assert out.n_prompt_tokens == ref.n_prompt_tokens
        assert out.n_generated_tokens == ref.n_generated_tokens
        if hit:
            assert out.timings["vision_encode"] == 0.0
        else:
            assert out.timings["vision_encode"] > 0.0
        assert cached.prefix_cache.nbytes <= cached.prefix_cache.max_bytes
        n_tokens += len(got)
    assert cached.prefix_cache.evictions - evictions0 == 2
    assert len(cold.prefix_cache) == 0
    assert n_tokens >= len(SCHEDULE) * 12  # the runs generated something to compare


def test_one_cached_frame_holds_its_kv_cells(pair: Any, frames: list[np.ndarray]) -> None:
    """The stored state is the prefix's K and V (plus per-cell metadata), and the query
    starts at the position the image left: M-RoPE advances 30, not 900, for a 30 x 30 image."""
    cached, _ = pair
    cached.prefix_cache.clear()
    cached.use_grammar = True
    cached.generate(frames[0], MULTI_OBJECT.build_prompt(QUERIES[0]))
    (entry,) = cached.prefix_cache._entries.values()
    assert isinstance(entry, PrefixState)
    kv = entry.n_tokens * TINY_KV_BYTES_PER_TOKEN
    print(
        f"one cached tiny frame: {entry.nbytes} bytes for {entry.n_tokens} KV cells "
        f"(K+V {kv} bytes, {(entry.nbytes - kv) / entry.n_tokens:.1f} bytes/cell metadata); "
        f"query starts at position {entry.n_past}"
    )
    assert kv <= entry.nbytes <= kv + 64 * entry.n_tokens + 1024
    n_text = entry.n_tokens - IMAGE_TOKENS
    assert n_text > 10 and entry.n_past == n_text + IMAGE_SIDE
    assert entry.signature[-1] == (-1, IMAGE_TOKENS)


def test_keys_are_frame_content(pair: Any, frames: list[np.ndarray]) -> None:
    cached, _ = pair
    cached.prefix_cache.clear()
    cached.use_grammar = False
    prompt = MULTI_OBJECT.build_prompt(QUERIES[0])
    cached.generate(frames[0], prompt)
    assert cached.generate(np.array(frames[0]), prompt).timings["reasoner_cache_hit"] == 1.0
    changed = frames[0].copy()
    changed[420, 420, 1] ^= 1  # one pixel
    assert cached.generate(changed, prompt).timings["reasoner_cache_hit"] == 0.0
    # an explicit key (the pipeline passes the original frame's key) is used as given
    key = "frame:" + frame_key(frames[1])
    assert cached.generate(frames[1], prompt, frame_key=key).timings["reasoner_cache_hit"] == 0
    assert key in cached.prefix_cache
    assert cached.generate(frames[1], prompt, frame_key=key).timings["reasoner_cache_hit"] == 1


def test_prefix_cache_bounds() -> None:
    def entry(n: int) -> PrefixState:
        return PrefixState(((1, 2), (-1, 900)), None, n, 902, 34, 3)

    cache = PrefixCache(100)
    for key in "abc":
        cache.put(key, entry(40))
    assert list(cache._entries) == ["b", "c"] and cache.nbytes == 80 and cache.evictions == 1
    assert cache.get("b", ((1, 2), (-1, 900))) is not None  # b is now the most recent
    assert cache.get("c", ((9,), (-1, 900))) is None  # another prefix: a miss
    cache.put("d", entry(40))
    assert list(cache._entries) == ["b", "d"]
    cache.put("e", entry(101))  # larger than the bound: not stored
    assert "e" not in cache and cache.nbytes == 80
    cache.discard("b")
    assert len(cache) == 1 and cache.nbytes == 40
    assert not PrefixCache(0).enabled
    with pytest.raises(ValueError, match=">= 0 bytes"):
        PrefixCache(-1)


def test_bad_prefix_cache_size(tiny_text_ggufs: dict[str, Path], tiny_mmproj: Path) -> None:
    with pytest.raises(ValueError, match="prefix_cache_mb must be >= 0"):
        open_reasoner(tiny_text_ggufs["Q4_K_M"], tiny_mmproj, prefix_cache_mb=-1)
    # an infinity (OverflowError before), a str or None (TypeError before), NaN, a bool
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="prefix_cache_mb must be a finite number"):
            open_reasoner(tiny_text_ggufs["Q4_K_M"], tiny_mmproj, prefix_cache_mb=bad)
    for bad in ("8", None, True):
        with pytest.raises(ValueError, match="prefix_cache_mb must be a number"):
            open_reasoner(tiny_text_ggufs["Q4_K_M"], tiny_mmproj, prefix_cache_mb=bad)
