"""This machine's memory bandwidth: the best of several large array copies."""

from __future__ import annotations

import time

import numpy as np

DEFAULT_MIB = 256


def measure_bandwidth(size_mib: int = DEFAULT_MIB, repeats: int = 5) -> dict[str, float]:
    """Copy a ``size_mib`` buffer ``repeats`` times; the best run gives GB/s (10^9 bytes).

    A copy reads and writes every byte, so it moves ``2 * size`` bytes. One thread
    (numpy's copy) rarely saturates a multi-channel memory system: treat the figure as a
    lower bound of the machine's peak, measured under the load the machine has now.
    """
    if size_mib < 8:
        raise ValueError(f"size_mib must be >= 8 (caches would dominate), got {size_mib}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    n = size_mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)  # touched: pages are resident before timing
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first-touch the destination
    best = float("inf")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        dt = time.perf_counter() - t0
        times.append(dt)
        best = min(best, dt)
    nbytes = 2 * src.nbytes
    return {
        "gbs": nbytes / best / 1e9,
        "gbs_median": nbytes / sorted(times)[len(times) // 2] / 1e9,
        "bytes_per_copy": float(nbytes),
        "repeats": float(repeats),
    }
