"""Timing statistics, peak resident memory and GPU memory of the current process."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

STAT_PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values`` (``numpy.percentile``)."""
    if len(values) == 0:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"n", "mean", "min", "max", "p50", "p90", "p99"}`` of per-iteration seconds."""
    if len(values) == 0:
        raise ValueError("no measurements to summarize")
    xs = np.asarray(values, dtype=np.float64)
    out = {"n": float(xs.size), "mean": float(xs.mean()), "min": float(xs.min())}
    out["max"] = float(xs.max())
    for q, v in zip(STAT_PERCENTILES, np.percentile(xs, STAT_PERCENTILES), strict=True):
        out[f"p{q}"] = float(v)
    return out


def _status_mib(key: str) -> float | None:
    """A ``kB`` field of /proc/self/status in MiB; ``None`` without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Current resident set size of this process in MiB (``VmRSS``; psutil where there is
    no /proc). The runtime side needs nothing beyond the runtime install for this."""
    rss = _status_mib("VmRSS")
    if rss is not None:
        return rss
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB since it started or the last reset.

    Read from ``VmHWM`` in /proc/self/status: psutil reports no peak on Linux, and
    ``getrusage`` ``ru_maxrss`` inherits the parent's peak across ``vfork`` + ``exec``.
    """
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc (macOS: bytes)
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def reset_peak_rss() -> bool:
    """Reset the peak RSS counter (Linux ``clear_refs`` 5); False where not supported.

    A write to /proc that neither psutil nor the standard library offers.
    """
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
        from segzero_edge.platform.cuda import cudart

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
