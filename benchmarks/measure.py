"""Timing statistics, peak resident memory and GPU memory of the current process."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

STAT_PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values`` (numpy's default method)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"n", "mean", "min", "max", "p50", "p90", "p99"}`` of per-iteration seconds."""
    if not values:
        raise ValueError("no measurements to summarize")
    out = {
        "n": float(len(values)),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }
    for q in STAT_PERCENTILES:
        out[f"p{q}"] = percentile(values, q)
    return out


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident set size in MiB (0 where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024


def peak_rss_mib() -> float:
    """Peak resident set size in MiB since the process started or the last reset."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS counter (Linux ``clear_refs`` 5); False where not supported."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class GpuMemorySampler:
    """Samples device memory in use (``cudaMemGetInfo``) on a thread; keeps the peak.

    On Jetson the GPU shares system memory, so this counts what the whole system uses.
    ``available`` is False without a CUDA device (then ``peak_mib`` stays None).
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak_mib: float | None = None
        self.baseline_mib: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mem_get_info = self._probe()
        self.available = self._mem_get_info is not None

    @staticmethod
    def _probe() -> Any:
        from segzero_edge.device import cudart

        try:
            rt = cudart()
        except ImportError:
            return None
        try:
            err, _count = rt.cudaGetDeviceCount()
            if int(err) != 0 or _count < 1:
                return None
        except Exception:
            return None

        def used() -> float | None:
            err, free, total = rt.cudaMemGetInfo()
            return None if int(err) != 0 else (total - free) / 2**20

        return used

    def used_mib(self) -> float | None:
        return self._mem_get_info() if self._mem_get_info else None

    def _loop(self) -> None:
        while not self._stop.is_set():
            u = self.used_mib()
            if u is not None and (self.peak_mib is None or u > self.peak_mib):
                self.peak_mib = u
            time.sleep(self.interval_s)

    def __enter__(self) -> GpuMemorySampler:
        if self.available:
            self.baseline_mib = self.used_mib()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per key, :func:`summarize` over the iterations (rows) that have it."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return {k: summarize([r[k] for r in rows if k in r]) for k in keys}
