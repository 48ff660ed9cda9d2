"""Benchmark measuring helpers: percentiles, peak RSS, the bandwidth copy."""

from __future__ import annotations

import numpy as np
import pytest

from segzero_bench.bandwidth import measure_bandwidth
from segzero_bench.measure import (
    aggregate,
    peak_rss_mib,
    percentile,
    reset_peak_rss,
    rss_mib,
    summarize,
)


def test_percentile_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        xs = rng.random(n).tolist()
        for q in (0, 50, 90, 99, 100):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_summarize_and_aggregate() -> None:
    s = summarize([3.0, 1.0, 2.0])
    assert s["p50"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["n"] == 3
    agg = aggregate([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    assert agg["a"]["mean"] == 2.0 and agg["b"]["n"] == 1


def test_peak_rss_sees_a_large_allocation() -> None:
    """The peak keeps a 200 MiB block after it is freed (robust to other pages of this process
    being reclaimed meanwhile, as happens on a loaded machine). The block is an anonymous
    mapping of its own, so freeing it returns it to the system whatever malloc's thresholds
    are after the tests before this one."""
    import mmap

    assert reset_peak_rss()
    size = 200 * 2**20
    block = mmap.mmap(-1, size)
    chunk = b"\1" * 2**20
    for _ in range(size // len(chunk)):  # touch every page
        block.write(chunk)
    held = rss_mib()
    block.close()  # munmap
    after = rss_mib()
    peak = peak_rss_mib()
    print(f"rss holding the block {held:.0f} MiB, after freeing it {after:.0f}, peak {peak:.0f}")
    assert held - after >= 190, (held, after)
    assert peak >= held - 1 and peak >= after + 190, (held, after, peak)


def test_bandwidth_is_sane() -> None:
    bw = measure_bandwidth(64, repeats=3)
    print(f"copy bandwidth {bw['gbs']:.1f} GB/s")
    assert 0.3 < bw["gbs"] < 2000
    assert bw["gbs"] >= bw["gbs_median"]
    assert bw["bytes_per_copy"] == 2 * 64 * 2**20
    with pytest.raises(ValueError, match="size_mib"):
        measure_bandwidth(1)
