"""``segzero-edge bench``: this runtime vs Seg-Zero's reference and a stock llama-cpp-python +
onnxruntime pipeline, per stage and workload, with rooflines.

Registered with the ``segzero-edge`` CLI through the ``segzero_edge.commands`` entry point. The
measuring code needs the [bench] extra (torch, transformers, sam2 for the reference side, and
matplotlib).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from segzero_export.model_shapes import DEFAULT_REASONER_SHAPES, SHAPE_NAMES

from .workload import DEFAULT_DECODE_TOKENS, WORKLOADS


def worker_main(argv: list[str]) -> int:
    """Entry of the per-side child processes the benchmark starts."""
    from .run import worker

    return int(worker(argv))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark SegZeroEdge.segment() against Seg-Zero's reference and a stock pipeline",
        description=(
            "Three sides on the same inputs: runtime (SegZeroEdge.segment), reference "
            "(transformers generate + SAM2ImagePredictor) and stock (llama-cpp-python's "
            "Qwen25VLChatHandler + SAM2 ONNX on onnxruntime). Three workloads: one query per "
            "new frame, three queries on one frame, a three-object answer. Per-stage p50/p90 "
            "(warm-up excluded), ratios of the runtime against each peer, peak memory, decode "
            "tokens/s with the decode length forced equal on every side (EOS ignored) as a "
            "fraction of this machine's bandwidth ceiling, overlap efficiency, overlapped vs "
            "sequential, the export's memory estimate vs the measured peak, and roofline "
            "floors per Jetson. Writes bench-<fingerprint>-<shapes>-<time>.json and .png."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 iterations after 1 warm-up per workload, 16 decode tokens, 1 thread "
        "(unless --threads), the runtime side only (unless --side), no overlap re-run (unless "
        "--overlap-check): under 2 minutes on 2 CPU cores once the tiny models are built",
    )
    p.add_argument(
        "--shapes",
        choices=["tiny", "real"],
        default="tiny",
        help="tiny test models, or a published reasoner's shapes (--reasoner-shapes) + SAM2.1 "
        "t/b+ shapes, random weights (slow on CPU)",
    )
    p.add_argument(
        "--reasoner-shapes",
        choices=list(SHAPE_NAMES),
        default=None,
        help="with --shapes real: the reasoner's published sizes (default qwen25vl-3b); the "
        "Qwen3-VL ones run the runtime side only (--side runtime), with the qwen3vl-grounding "
        "family (832 x 832 frame, 676 image tokens)",
    )
    p.add_argument("--iters", type=int, help="measured iterations (default 10; quick 2)")
    p.add_argument("--warmup", type=int, help="warm-up iterations, not measured (default 1)")
    p.add_argument(
        "--decode-tokens",
        type=int,
        help=f"tokens decoded per call (default {DEFAULT_DECODE_TOKENS})",
    )
    p.add_argument("--threads", type=int, help="CPU threads for every backend (default: all)")
    p.add_argument(
        "--side",
        action="append",
        choices=["all", "runtime", "reference", "stock"],
        help="side(s) to run (repeatable; default all three, with --quick runtime)",
    )
    p.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="workload(s) to run (repeatable; default all three)",
    )
    p.add_argument(
        "--overlap",
        choices=["auto", "on", "off"],
        default="auto",
        help="the runtime's SAM2 encode beside the reasoner (auto: the runtime's default)",
    )
    p.add_argument(
        "--overlap-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-run the runtime in the other overlap mode (default on; off with --quick)",
    )
    p.add_argument("--sam2", action="append", help="SAM2 config(s) to run, e.g. sam2.1_hiera_t")
    p.add_argument(
        "--bundle",
        type=Path,
        help="measure this bundle (runtime and stock; TensorRT when its engines exist)",
    )
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument(
        "--ref-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="reference weights (auto: float32 on the CPU, bfloat16 on CUDA)",
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per side (default 3600)"
    )
    p.add_argument("--target", help="Jetson target this runs on (default: detected)")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    p.add_argument("--cache", type=Path, help="model cache (default ~/.cache/segzero-edge/bench)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="no measuring: plot these bench JSON files side by side",
    )
    p.add_argument(
        "--roofline",
        action="store_true",
        help="no measuring: print the Jetson roofline for every reasoner shape + SAM2 "
        "(or the --reasoner-shapes given)",
    )
    p.set_defaults(func=run, log_default=logging.INFO)  # a long build: name its steps


ROOFLINE_SAM2: dict[str, str] = {
    "qwen25vl-3b": "tiny",
    "qwen25vl-7b": "large",
    "qwen3vl-2b": "tiny",
    "qwen3vl-4b": "tiny",
    "qwen3vl-8b": "base_plus",
}
"""The SAM2.1 variant each reasoner shape's roofline is printed with (what fits beside it)."""


def _print_roofline(names: Sequence[str] = SHAPE_NAMES) -> None:
    from .roofline import REASONER_SHAPES, Workload, roofline

    for name in names:
        shape, sam = REASONER_SHAPES[name], ROOFLINE_SAM2[name]
        work = Workload(shape, sam2_variant=sam)
        roof = roofline(work)
        print(
            f"{name} ({shape.name}) Q4_K_M + SAM2.1 {sam}: {shape.resize_size} px frame, "
            f"{work.prompt_tokens} prompt tokens, {work.decode_tokens} decode tokens"
        )
        for name, r in roof.items():
            if name == "workload":
                continue
            f = r["floors_s"]
            print(
                f"  {name:<14} decode <= {r['decode_tokens_per_s']:6.1f} tok/s | floors ms: "
                + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in f.items() if v is not None)
            )


def run(args: argparse.Namespace) -> int:
    if args.roofline:
        _print_roofline([args.reasoner_shapes] if args.reasoner_shapes else SHAPE_NAMES)
        return 0
    if args.compare:
        from .plot import load_runs, plot_compare

        docs = load_runs(args.compare)
        out = args.out / "bench-compare.png" if args.out.suffix != ".png" else args.out
        print(f"wrote {plot_compare(docs, out)}")
        return 0
    from .run import SIDES, BenchConfig, run_bench
    from .workload import BenchInputs

    if not args.side:
        sides = ("runtime",) if args.quick else SIDES
    else:
        sides = SIDES if "all" in args.side else tuple(dict.fromkeys(args.side))
    overlap = {"auto": None, "on": True, "off": False}[args.overlap]
    opts = {
        "shapes": args.shapes,
        "reasoner_shapes": args.reasoner_shapes or DEFAULT_REASONER_SHAPES,
        "threads": args.threads,
        "sides": sides,
        "overlap_check": not args.quick if args.overlap_check is None else args.overlap_check,
        "timeout_s": args.timeout,
        "sam2": tuple(args.sam2) if args.sam2 else None,
        "out_dir": args.out,
        "cache": args.cache,
        "target": args.target,
        "plot": not args.no_plot,
        "bundle": args.bundle,
        "segmenter_backend": args.segmenter_backend,
        "ref_dtype": args.ref_dtype,
    }
    for key in ("iters", "warmup", "decode_tokens"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    cfg = BenchConfig.quick(**opts) if args.quick else BenchConfig(**opts)
    cfg.inputs = BenchInputs(
        workloads=tuple(dict.fromkeys(args.workload or WORKLOADS)),
        decode_tokens=cfg.decode_tokens,
        overlap=overlap,
    )
    run_bench(cfg)
    return 0
