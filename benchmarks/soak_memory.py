"""Memory soak: N ``segment()`` calls on one bundle; resident memory growth after warm-up.

    python benchmarks/soak_memory.py --bundle BUNDLE --calls 500

Frames rotate among 3 (SAM2 embedding cache hits) and every 10th call brings a frame never
seen before (a cache miss that evicts an entry); queries rotate among 5. Resident set size
is read with psutil after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil


def rss_mb() -> float:
    """Resident set size of this process in MiB (``psutil``)."""
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: the tiny demo bundle)")
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=25)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    from segzero_edge import SegZeroEdge
    from segzero_edge.commands.segment import resolve_bundle

    bundle = resolve_bundle(args.bundle)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    frames = [np.roll(base, 17 * i, axis=1) for i in range(3)]
    queries = ["the knife", "the red cup", "the bread", "what holds water", "the board"]
    times: list[float] = []
    statuses: dict[str, int] = {}
    with SegZeroEdge.from_bundle(bundle, max_new_tokens=args.max_new_tokens) as model:
        rss_start = 0.0
        for i in range(args.calls):
            if i == args.warmup:
                rss_start = rss_mb()
            t0 = time.perf_counter()
            frame = frames[i % len(frames)] if i % 10 else np.roll(base, 5 * i + 1, axis=0)
            r = model.segment(frame, queries[i % len(queries)])
            times.append(time.perf_counter() - t0)
            statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
            if (i + 1) % 50 == 0:
                print(f"{i + 1:5d} calls  rss {rss_mb():8.1f} MB", file=sys.stderr)
        rss_end = rss_mb()
    growth = (rss_end - rss_start) / rss_start * 100
    figures = {
        "calls": args.calls,
        "warmup": args.warmup,
        "rss_after_warmup_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_percent": round(growth, 2),
        "call_p50_ms": round(statistics.median(times) * 1000, 1),
        "statuses": statuses,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if growth < 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
