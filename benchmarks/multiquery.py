"""Several queries on one frame: what the 2nd..Nth query costs against the first.

Runs the public API (``SegZeroEdge.segment_many`` and repeated ``SegZeroEdge.segment``) on
random-weight models of the real architectures (:mod:`segzero_bench.artifacts`: ``tiny``, or
``real`` = Qwen2.5-VL-3B shapes, Q4_K_M) with a fixed decode length (``FixedLengthReasoner``,
no grammar), so every query decodes the same number of tokens and the difference is the
prompt: the first query on a frame encodes the image and evaluates ~925 prefix tokens, a later
one restores the cached prefix and evaluates only its own ~170 tokens. Also times SAM2 decoding
of B objects in one call against B calls. Target (issue 16): later / first <= 0.25 at 3B shapes.

    python -m segzero_bench.multiquery --shapes tiny
    nice -n 10 python -m segzero_bench.multiquery --shapes real --json runs/multiquery-real.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUERIES = (
    "the cup on the table",
    "where should the robot grasp the cup",
    "something flat to put the cup on",
    "the knife that can cut the bread",
)
TARGET_RATIO = 0.25
SAM2_CONFIG = "sam2.1_hiera_t"
STAGES = ("vision_encode", "prefill", "decode", "reason", "total")


def frame(seed: int, hw: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A seeded random RGB frame (random weights see no objects in any image)."""
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def build_model(shapes: str, decode_tokens: int, threads: int, prefix_cache_mb: float) -> Any:
    """``SegZeroEdge`` on the artefacts of ``shapes``: CPU llama.cpp + onnxruntime SAM2."""
    from segzero_bench.artifacts import ensure_artifacts
    from segzero_bench.hooks import FixedLengthReasoner
    from segzero_edge import SegZeroEdge
    from segzero_edge.segmenter.onnxruntime import OrtSegmenter

    art = ensure_artifacts(shapes, log=lambda m: print(m, file=sys.stderr))
    reasoner = FixedLengthReasoner(  # the same decode length for every query
        art.reasoner_gguf,
        art.mmproj_gguf,
        tokens=decode_tokens,
        n_gpu_layers=0,
        n_threads=threads,
        warmup=False,
        prefix_cache_mb=prefix_cache_mb,
    )
    sam = art.sam2[SAM2_CONFIG]
    segmenter = OrtSegmenter(
        sam["encoder"], sam["decoder"], providers=["CPUExecutionProvider"], threads=threads
    )
    # random weights have no family of their own: the multi-object prompt, as the tiny bundle
    return SegZeroEdge(reasoner, segmenter, family="multi-object")


def _row(result: Any) -> dict[str, float]:
    t = result.timings
    row = {k: float(t.get(k, 0.0)) for k in STAGES}
    row["generated_tokens"] = float(result.generated_tokens)
    row["reasoner_cache_hit"] = float(result.reasoner_cache_hit)
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    """First query, later queries (mean), and later / first for ``total`` and ``reason``."""
    first, later = rows[0], rows[1:]
    out: dict[str, Any] = {"first": first, "later": later}
    for key in ("total", "reason"):
        mean_later = statistics.fmean(r[key] for r in later)
        out[f"later_{key}_mean_s"] = mean_later
        out[f"ratio_{key}"] = mean_later / first[key]
    out["same_decode_length"] = len({r["generated_tokens"] for r in rows}) == 1
    out["later_all_hits"] = all(r["reasoner_cache_hit"] == 1.0 for r in later)
    return out


def sam2_batch_timing(model: Any, batches: tuple[int, ...], reps: int) -> list[dict[str, float]]:
    """SAM2 decoding of B box + point prompts: one call with ``[B, 3, 2]`` vs B calls."""
    from segzero_edge import pixels
    from segzero_edge.segmenter.prompts import prompt_arrays

    seg = model.segmenter
    img = frame(99)
    emb = seg.encode(pixels.preprocess_sam(img))
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        arrays = []
        for _ in range(b):
            x0, y0 = rng.uniform(0, 320), rng.uniform(0, 240)
            box = (x0, y0, x0 + 200, y0 + 150)
            arrays.append(prompt_arrays(box, [(x0 + 100, y0 + 75)], img.shape[:2]))
        coords = np.concatenate([a[0] for a in arrays])
        labels = np.concatenate([a[1] for a in arrays])
        seg.decode(emb, coords, labels)  # warm-up of this shape
        one, each = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            seg.decode(emb, coords, labels)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for c, lab in arrays:
                seg.decode(emb, c, lab)
            each.append(time.perf_counter() - t0)
        t_one, t_each = statistics.median(one), statistics.median(each)
        rows.append({"objects": b, "one_call_s": t_one, "per_object_s": t_each})
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    queries = list(QUERIES[: args.queries])
    t0 = time.perf_counter()
    model = build_model(args.shapes, args.decode_tokens, args.threads, args.prefix_cache_mb)
    report: dict[str, Any] = {
        "shapes": args.shapes,
        "decode_tokens": args.decode_tokens,
        "threads": args.threads,
        "queries": queries,
        "load_s": time.perf_counter() - t0,
    }
    with model:
        if not args.no_warmup:  # one-time costs (allocations, first graph) out of the figures
            model.segment(frame(0), "warm up")
        print(f"segment_many on one frame, {len(queries)} queries ...", file=sys.stderr)
        many = [_row(r) for r in model.segment_many(frame(1), queries)]
        print(f"segment() x {len(queries)} on another frame ...", file=sys.stderr)
        single = [_row(model.segment(frame(2), q)) for q in queries]
        cache = model.reasoner.prefix_cache
        entries = list(cache._entries.values())
        report["segment_many"] = summarise(many)
        report["segment"] = summarise(single)
        report["prefix_cache"] = {
            "max_bytes": cache.max_bytes,
            "frames": len(entries),
            "bytes_per_frame": [e.nbytes for e in entries],
            "kv_cells_per_frame": [e.n_tokens for e in entries],
        }
        if not args.no_sam2:
            report["sam2_decode"] = sam2_batch_timing(model, (1, 2, 4, 8), args.sam2_reps)
    return report


def print_report(r: dict[str, Any]) -> bool:
    """A table on stdout; True when both APIs meet the target ratio."""
    print(
        f"\n{r['shapes']} shapes, {r['decode_tokens']} decoded tokens per query, "
        f"{r['threads']} threads"
    )
    ok = True
    for api in ("segment_many", "segment"):
        s = r[api]
        print(f"\n{api}:")
        print(f"  {'query':>5} {'hit':>3} " + " ".join(f"{k:>13}" for k in STAGES))
        for i, row in enumerate([s["first"], *s["later"]]):
            cells = " ".join(f"{row[k] * 1e3:11.0f}ms" for k in STAGES)
            print(f"  {i + 1:>5} {int(row['reasoner_cache_hit']):>3} {cells}")
        passed = s["ratio_total"] <= TARGET_RATIO and s["later_all_hits"]
        ok = ok and passed and s["same_decode_length"]
        print(
            f"  later / first: total {s['ratio_total']:.3f}, reasoner {s['ratio_reason']:.3f} "
            f"(target <= {TARGET_RATIO}: {'met' if passed else 'NOT met'}; same decode length: "
            f"{s['same_decode_length']})"
        )
    pc = r["prefix_cache"]
    sizes = ", ".join(
        f"{b / 2**20:.2f} MiB ({n} cells)"
        for b, n in zip(pc["bytes_per_frame"], pc["kv_cells_per_frame"], strict=True)
    )
    print(f"\nprefix cache: {pc['frames']} frames of {pc['max_bytes'] / 2**20:.0f} MiB: {sizes}")
    if "sam2_decode" in r:
        print("\nSAM2 decode, B objects: one call vs one call per object (median)")
        for row in r["sam2_decode"]:
            ratio = row["one_call_s"] / row["per_object_s"]
            print(
                f"  B={row['objects']}: {row['one_call_s'] * 1e3:7.1f} ms vs "
                f"{row['per_object_s'] * 1e3:7.1f} ms (ratio {ratio:.2f})"
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m segzero_bench.multiquery",
        description=(
            "Time the 2nd..Nth query on a frame against the first (reasoner prefix cache, "
            "shared SAM2 embedding) through SegZeroEdge.segment_many / segment, at a fixed "
            "decode length; and SAM2 decoding of B objects in one call vs B calls. Exit 1 when "
            f"later / first exceeds {TARGET_RATIO}."
        ),
    )
    p.add_argument("--shapes", choices=("tiny", "real"), default="tiny")
    p.add_argument("--queries", type=int, default=4, choices=range(2, len(QUERIES) + 1))
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prefix-cache-mb", type=float, default=128.0)
    p.add_argument("--sam2-reps", type=int, default=5)
    p.add_argument("--no-sam2", action="store_true", help="skip the SAM2 batch timing")
    p.add_argument("--no-warmup", action="store_true", help="no warm-up call first")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    report = run(args)
    ok = print_report(report)
    if args.json:
        from segzero_edge.fileio import atomic_path

        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
