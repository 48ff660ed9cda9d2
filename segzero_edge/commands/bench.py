"""``segzero-edge bench``: this runtime vs the Seg-Zero reference, per stage, with rooflines.

The measuring code is the ``segzero_bench`` package (``benchmarks/`` in the source tree); it
needs the [export] extra (torch, transformers, sam2) for the reference side and matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_bench() -> ModuleType:
    """The ``segzero_bench`` package: installed, or ``benchmarks/`` beside this source tree."""
    try:
        return importlib.import_module("segzero_bench")
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    init = root / "__init__.py"
    if not init.is_file():
        raise ValueError(
            "the benchmark code (segzero_bench) is not installed; install segzero-edge from a "
            "source checkout with the [export,dev] extras"
        )
    spec = importlib.util.spec_from_file_location(
        "segzero_bench", init, submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["segzero_bench"] = module
    spec.loader.exec_module(module)
    return module


def worker_main(argv: list[str]) -> int:
    """Entry of the per-side child processes the benchmark starts."""
    load_bench()
    from segzero_bench.run import worker  # type: ignore[import-not-found]

    return int(worker(argv))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark this runtime against the Seg-Zero reference pipeline",
        description=(
            "Per-stage timings (warm-up excluded), end-to-end p50/p90/p99, peak memory, decode "
            "tokens/s with the decode length forced equal on both sides (EOS ignored), the "
            "ratio table, roofline floors per Jetson and this machine's memory bandwidth. "
            "Writes bench-<fingerprint>-<shapes>-<time>.json and .png to --out."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 iterations after 1 warm-up, 16 decode tokens, 1 thread (unless --threads)",
    )
    p.add_argument(
        "--shapes",
        choices=["tiny", "real"],
        default="tiny",
        help="tiny test models, or Qwen2.5-VL-3B + SAM2.1 t/b+ shapes (slow on CPU)",
    )
    p.add_argument("--iters", type=int, help="measured iterations (default 10; quick 2)")
    p.add_argument("--warmup", type=int, help="warm-up iterations, not measured (default 1)")
    p.add_argument("--decode-tokens", type=int, help="tokens decoded per call (default 64)")
    p.add_argument("--threads", type=int, help="CPU threads for every backend (default: all)")
    p.add_argument("--side", choices=["both", "runtime", "reference"], default="both")
    p.add_argument("--sam2", action="append", help="SAM2 config(s) to run, e.g. sam2.1_hiera_t")
    p.add_argument(
        "--bundle",
        type=Path,
        help="measure this bundle (runtime side only; TensorRT when its engines exist)",
    )
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument(
        "--ref-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="reference weights (auto: bfloat16 on CUDA; CPU float32 tiny, bf16 real)",
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
        help="no measuring: print the Jetson roofline for Qwen2.5-VL-3B/7B + SAM2",
    )
    p.set_defaults(func=run)


def _print_roofline() -> None:
    from ..roofline import QWEN25VL_3B, QWEN25VL_7B, Workload, roofline

    for shape, sam in ((QWEN25VL_3B, "tiny"), (QWEN25VL_3B, "base_plus"), (QWEN25VL_7B, "large")):
        roof = roofline(Workload(shape, sam2_variant=sam))
        print(f"{shape.name} Q4_K_M + SAM2.1 {sam}: 1030 prompt tokens, 64 decode tokens")
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
        _print_roofline()
        return 0
    load_bench()
    if args.compare:
        from segzero_bench.plot import load_runs, plot_compare  # type: ignore[import-not-found]

        docs = load_runs(args.compare)
        out = args.out / "bench-compare.png" if args.out.suffix != ".png" else args.out
        print(f"wrote {plot_compare(docs, out)}")
        return 0
    from segzero_bench.run import SIDES, BenchConfig, run_bench  # type: ignore[import-not-found]

    opts = {
        "shapes": args.shapes,
        "threads": args.threads,
        "sides": SIDES if args.side == "both" else (args.side,),
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
    run_bench(cfg)
    return 0
