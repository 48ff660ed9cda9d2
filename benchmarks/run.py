"""``segzero-edge bench``: three sides on the same inputs, ratios, roofline, JSON + PNG.

``runtime`` is this project (``SegZeroEdge.segment``), ``reference`` Seg-Zero's PyTorch path,
``stock`` llama-cpp-python + onnxruntime as an edge developer assembles them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero_edge.fileio import atomic_path
from segzero_edge.layout import (
    MMPROJ_FILE,
    QWEN3VL_RESIZE_SIZE,
    REASONER_FILE,
    SAM2_DECODER_FILE,
    SAM2_ENCODER_FILE,
)
from segzero_edge.reasoner.defaults import DEFAULT_N_CTX
from segzero_edge.smoke import describe_exit
from segzero_export.model_shapes import DEFAULT_REASONER_SHAPES

from .workload import DEFAULT_DECODE_TOKENS, BenchInputs

SCHEMA_VERSION = 2
SIDES = ("runtime", "reference", "stock")
WORKER_CODE = (
    "import sys; from segzero_bench.cli_bench import worker_main; "
    "sys.exit(worker_main(sys.argv[1:]))"
)


@dataclass
class BenchConfig:
    """What one ``segzero-edge bench`` run measures."""

    shapes: str = "tiny"
    reasoner_shapes: str = DEFAULT_REASONER_SHAPES
    """With ``shapes="real"``: the published reasoner sizes (``segzero_export.model_shapes``);
    the Qwen3-VL ones run the runtime side only, with the ``qwen3vl-grounding`` family."""
    iters: int = 10
    warmup: int = 1
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    threads: int | None = None
    sides: tuple[str, ...] = SIDES
    sam2: tuple[str, ...] | None = None
    out_dir: Path = Path("bench-results")
    cache: Path | None = None
    target: str | None = None
    bandwidth_mib: int = 256
    timeout_s: float = 3600.0
    plot: bool = True
    bundle: Path | None = None
    """Measure this bundle's files (runtime side only: the reference needs the sources)."""
    segmenter_backend: str = "auto"
    ref_dtype: str = "auto"
    """Reference weights: auto = float32 on the CPU, bfloat16 on CUDA."""
    overlap_check: bool = True
    """Also run the runtime's single workload in the other overlap mode (overlapped vs
    sequential on this device)."""
    inputs: BenchInputs = field(default_factory=BenchInputs)

    @classmethod
    def quick(cls, **kw: Any) -> BenchConfig:
        """Small enough for under 5 minutes on 2 CPU cores (after the models are built).

        One thread per backend unless ``threads`` is given: on a shared machine multi-thread
        timings are dominated by thread-barrier stalls (llama.cpp especially), one thread is
        not; both sides always get the same thread count.
        """
        base = {"iters": 2, "warmup": 1, "decode_tokens": 16, "bandwidth_mib": 128}
        kw = {k: v for k, v in kw.items() if not (k == "threads" and v is None)}
        return cls(**{**base, "threads": 1, **kw})

    def to_json(self) -> dict[str, Any]:
        return {
            "shapes": self.shapes,
            "reasoner_shapes": self.reasoner_shapes if self.shapes == "real" else None,
            "iters": self.iters,
            "warmup": self.warmup,
            "decode_tokens": self.decode_tokens,
            "threads": self.threads,
            "sides": list(self.sides),
            "bundle": str(self.bundle) if self.bundle else None,
            "segmenter_backend": self.segmenter_backend,
            "ref_dtype": self.ref_dtype,
            "overlap_check": self.overlap_check,
            "inputs": self.inputs.to_json(),
        }


def fingerprint() -> tuple[str, dict[str, Any]]:
    """This device's fingerprint and probe details (a CPU fallback if the probe is missing)."""
    try:
        from segzero_edge.platform.fingerprint import device_fingerprint
        from segzero_edge.platform.report import device_info

        return device_fingerprint(), device_info()
    except ImportError:
        import platform

        return f"cpu-{platform.machine().lower().replace('_', '-')}", {}


def gguf_decode_bytes(path: Path) -> float:
    """Bytes one decode step reads from a text GGUF: all tensors but the embedding table
    (read fully only when it doubles as the output matrix)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    total = sum(v for k, v in sizes.items() if k != "token_embd.weight")
    if "output.weight" not in sizes:
        total += sizes.get("token_embd.weight", 0)
    return float(total)


def _load() -> float | None:
    """1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def shape_from_gguf(reasoner_gguf: Path, mmproj_gguf: Path, name: str = "model") -> Any:
    """The :class:`ReasonerShape` of an exported GGUF pair (what the runtime side runs)."""
    import gguf

    from .roofline import ReasonerShape

    def fields(path: Path) -> tuple[dict[str, Any], dict[str, list[int]]]:
        r = gguf.GGUFReader(str(path))
        meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.")}
        return meta, {t.name: [int(d) for d in t.shape] for t in r.tensors}

    t, tensors = fields(reasoner_gguf)
    v, vtensors = fields(mmproj_gguf)
    arch = t.get("general.architecture", "qwen2vl")
    heads = int(t[f"{arch}.attention.head_count"])
    hidden = int(t[f"{arch}.embedding_length"])
    depth = int(v["clip.vision.block_count"])
    wa = int(v.get("clip.vision.n_wa_pattern") or 0)
    qwen3: dict[str, Any] = {}
    if arch == "qwen3vl":  # GELU vision MLPs, deepstack mergers, learned positions, 832 resize
        deepstack = v.get("clip.vision.is_deepstack_layers") or []
        pos = vtensors.get("v.position_embd.weight") or [0]
        qwen3 = {
            "vision_mlp_mats": 2,
            "deepstack_mergers": sum(bool(x) for x in deepstack),
            "vision_positions": pos[-1] if len(pos) > 1 else 0,  # ggml order: (hidden, n)
            "resize_size": QWEN3VL_RESIZE_SIZE,
        }
    return ReasonerShape(
        name=name,
        layers=int(t[f"{arch}.block_count"]),
        hidden=hidden,
        intermediate=int(t[f"{arch}.feed_forward_length"]),
        heads=heads,
        kv_heads=int(t.get(f"{arch}.attention.head_count_kv") or heads),
        head_dim=int(t.get(f"{arch}.attention.key_length") or hidden // heads),
        vocab=tensors["token_embd.weight"][1],
        vision_depth=depth,
        vision_hidden=int(v["clip.vision.embedding_length"]),
        vision_intermediate=int(v["clip.vision.feed_forward_length"]),
        vision_full_blocks=depth // wa if wa else depth,
        patch_size=int(v.get("clip.vision.patch_size", 14)),
        merge_size=int(v.get("clip.vision.spatial_merge_size", 2)),
        **qwen3,
    )


def run_side(side: str, cfg: dict[str, Any], timeout_s: float, log=print) -> dict[str, Any]:
    """One side in a fresh Python process (its own peak RSS, threads and allocator)."""
    with tempfile.TemporaryDirectory(prefix="segzero-bench-") as tmp:
        cfg_path, out_path = Path(tmp) / "cfg.json", Path(tmp) / "out.json"
        cfg_path.write_text(json.dumps(cfg))
        load_before = _load()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", WORKER_CODE, side, str(cfg_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"the {side} benchmark ran past {timeout_s:.0f} s (raise --timeout)"
            ) from None
        if proc.returncode != 0 or not out_path.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            how = describe_exit(proc.returncode)
            if proc.returncode < 0:
                how += ": a native crash in the worker (llama.cpp, onnxruntime, torch?)"
            raise RuntimeError(f"the {side} benchmark worker failed ({how}):\n{tail}")
        res = json.loads(out_path.read_text())
        res["wall_s"] = time.perf_counter() - t0
        res["load_average"] = {"start": load_before, "end": _load()}
        log(f"  {side}: done in {res['wall_s']:.1f} s")
        return res


def worker(argv: list[str]) -> int:
    """Child-process entry: ``SIDE CFG_JSON OUT_JSON``."""
    side, cfg_path, out_path = argv
    cfg = json.loads(Path(cfg_path).read_text())
    if side == "runtime":
        from .runtime_side import run_runtime as fn
    elif side == "reference":
        from .reference_side import run_reference as fn
    elif side == "stock":
        from .stock_side import run_stock as fn
    else:
        raise ValueError(f"unknown side {side!r}")
    res = fn(cfg)
    Path(out_path).write_text(json.dumps(res))
    return 0


def _roofline(case_cfg: dict[str, Any], prompt_tokens: int, cfg: BenchConfig) -> Any:
    from .roofline import Workload

    model, mmproj = Path(case_cfg["reasoner_gguf"]), Path(case_cfg["mmproj_gguf"])
    return Workload(
        reasoner=shape_from_gguf(model, mmproj, name=_case_model(cfg)),
        sam2_variant=case_cfg["sam2_config"],
        prompt_tokens=prompt_tokens,
        decode_tokens=cfg.decode_tokens,
        decode_weight_bytes=gguf_decode_bytes(Path(case_cfg["reasoner_gguf"])),
    )


def _case_model(cfg: BenchConfig) -> str:
    """The reasoner a case runs, as the tables name it."""
    if cfg.bundle is not None:
        return f"bundle {Path(cfg.bundle).name}"
    return "qwen2.5-vl-tiny" if cfg.shapes == "tiny" else cfg.reasoner_shapes


def _case_configs(cfg: BenchConfig, log: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, worker config) per case: the bundle's files, or each SAM2 config of ``shapes``."""
    from .artifacts import ensure_artifacts

    common = {
        "inputs": {**cfg.inputs.to_json(), "decode_tokens": cfg.decode_tokens},
        "iters": cfg.iters,
        "warmup": cfg.warmup,
        "threads": cfg.threads,
        "segmenter_backend": cfg.segmenter_backend,
        "ref_dtype": cfg.ref_dtype,
    }
    if cfg.bundle is not None:
        from segzero_edge.bundle import load_bundle

        b = load_bundle(cfg.bundle)
        variant = b.manifest.segmenter.variant or "sam2.1_hiera_t"
        if b.manifest.family:  # the bundle's prompt and SAM2 prompt
            common["inputs"]["family"] = b.manifest.family
        files = {
            "reasoner_gguf": str(b.path(REASONER_FILE)),
            "mmproj_gguf": str(b.path(MMPROJ_FILE)),
            "sam2_config": variant,
            "sam2_encoder": str(b.path(SAM2_ENCODER_FILE)),
            "sam2_decoder": str(b.path(SAM2_DECODER_FILE)),
        }
        return [(f"bundle {b.root.name} ({variant})", {**common, **files})]
    from .artifacts import reasoner_family

    art = ensure_artifacts(
        cfg.shapes, cache=cfg.cache, log=log, reasoner_shapes=cfg.reasoner_shapes
    )
    family = reasoner_family(cfg.reasoner_shapes) if cfg.shapes == "real" else None
    if family is not None:
        common["inputs"]["family"] = family
    out = []
    for sam in cfg.sam2 or tuple(art.sam2):
        if sam not in art.sam2:
            raise ValueError(f"SAM2 config {sam!r} not in the {cfg.shapes} set: {list(art.sam2)}")
        files = {
            "hf_dir": str(art.hf_dir),
            "reasoner_gguf": str(art.reasoner_gguf),
            "mmproj_gguf": str(art.mmproj_gguf),
            "sam2_config": sam,
            "sam2_checkpoint": str(art.sam2[sam]["checkpoint"]),
            "sam2_encoder": str(art.sam2[sam]["encoder"]),
            "sam2_decoder": str(art.sam2[sam]["decoder"]),
        }
        out.append((f"{_case_model(cfg)} + {sam}", {**common, **files}))
    return out


def memory_vs_measured(case_cfg: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The export's memory estimate of the files benchmarked beside the runtime's measured peak.

    On a CPU the estimate is for the ``cpu`` target and compares with peak RSS; where GPU
    memory is sampled, with the peak of RSS + GPU memory in use (Jetson shares one memory).
    """
    from segzero_export.memory import estimate_from_files
    from segzero_export.targets import get_target

    shape = shape_from_gguf(Path(case_cfg["reasoner_gguf"]), Path(case_cfg["mmproj_gguf"]))
    config = {
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "hidden_size": shape.hidden,
    }
    files = {
        "reasoner.gguf": Path(case_cfg["reasoner_gguf"]),
        "mmproj.gguf": Path(case_cfg["mmproj_gguf"]),
        "sam2_encoder.onnx": Path(case_cfg["sam2_encoder"]),
        "sam2_decoder.onnx": Path(case_cfg["sam2_decoder"]),
    }
    on_gpu = runtime.get("gpu_peak_mib") is not None
    target = get_target("cpu") if not on_gpu else None
    if target is None:
        from segzero_export.targets import host_memory_gb

        from .roofline import target_for_jetson

        name = target_for_jetson(fingerprint()[1].get("jetson_model"), host_memory_gb())
        target = get_target(name or "cpu")
    est = estimate_from_files(
        target, files, config, case_cfg["sam2_config"], int(case_cfg.get("n_ctx", DEFAULT_N_CTX))
    )
    measured = runtime["peak_rss_mib"] * 2**20 / 1e9
    what = "peak RSS"
    if on_gpu:
        extra = runtime["gpu_peak_mib"] - (runtime.get("gpu_baseline_mib") or 0.0)
        measured += extra * 2**20 / 1e9
        what = "peak RSS + GPU memory used"
    return {
        "target": est.target,
        "estimate_gb": est.total,
        "estimate": est.to_json(),
        "measured_gb": measured,
        "what": what,
        "difference": est.total / measured - 1,
        "within_15_percent": abs(est.total / measured - 1) <= 0.15,
    }


def _overlap_check(
    case_cfg: dict[str, Any], runtime: dict[str, Any], cfg: BenchConfig, log: Any
) -> dict[str, Any]:
    """The runtime's single workload overlapped and sequential on one CPU thread budget.

    The budget is ``--threads`` when it is at least 2, else every core (one thread cannot be
    split); the main run is reused when it ran one of the modes on that budget.
    """
    budget = cfg.threads if cfg.threads and cfg.threads >= 2 else (os.cpu_count() or 1)
    runs: dict[bool, dict[str, Any]] = {}
    if (cfg.threads or os.cpu_count()) == budget:
        runs[bool(runtime["backends"]["overlap"])] = runtime
    for mode in (True, False):
        if mode in runs:
            continue
        other_cfg = json.loads(json.dumps(case_cfg))
        other_cfg["threads"] = budget
        other_cfg["inputs"]["workloads"] = ["single"]
        other_cfg["inputs"]["overlap"] = mode
        name = "overlapped" if mode else "sequential"
        log(f"  runtime {name} on {budget} threads (overlap check)")
        runs[mode] = run_side("runtime", other_cfg, cfg.timeout_s, log)
    p50 = {m: r["workloads"]["single"]["stats"]["total"]["p50"] for m, r in runs.items()}
    winner = p50[True] < p50[False]
    from segzero_edge.placement import default_overlap

    default = default_overlap(**runtime["backends"]["devices"])
    return {
        "thread_budget": budget,
        "overlapped": p50[True],
        "sequential": p50[False],
        "threads_overlapped": runs[True]["backends"]["threads"],
        "threads_sequential": runs[False]["backends"]["threads"],
        "winner": "overlapped" if winner else "sequential",
        "gain": max(p50.values()) / min(p50.values()),
        "default": bool(default),
        "default_is_winner": bool(default) == winner,
        "runs": {
            ("overlapped" if m else "sequential"): r for m, r in runs.items() if r is not runtime
        },
    }


def check_reasoner_shapes_sides(cfg: BenchConfig) -> None:
    """``ValueError`` for an unknown ``reasoner_shapes``, one given without ``shapes="real"``,
    or a Qwen3-VL shape with a side other than ``runtime`` (the reference and stock sides are
    Qwen2.5-VL paths: transformers' Qwen2.5-VL classes, llama-cpp-python's
    ``Qwen25VLChatHandler``)."""
    from .artifacts import check_reasoner_shapes, reasoner_family

    check_reasoner_shapes(cfg.reasoner_shapes)
    if cfg.reasoner_shapes != DEFAULT_REASONER_SHAPES and cfg.shapes != "real":
        raise ValueError("--reasoner-shapes needs --shapes real")
    others = [s for s in cfg.sides if s != "runtime"]
    if cfg.shapes == "real" and reasoner_family(cfg.reasoner_shapes) and others:
        raise ValueError(
            f"{cfg.reasoner_shapes}: only the runtime side runs Qwen3-VL shapes (the "
            f"{' and '.join(others)} side(s) are Qwen2.5-VL paths); pass --side runtime"
        )


def run_bench(cfg: BenchConfig, log=print) -> dict[str, Any]:
    """Measure, print the tables, write ``bench-<fingerprint>-<shapes>-<time>.json`` + PNG."""
    from segzero_export.targets import host_memory_gb

    from .bandwidth import measure_bandwidth
    from .report import (
        case_ratios,
        memory_table,
        overlap_table,
        ratio_table,
        roofline_table,
        workload_stats,
    )
    from .workload import WORKLOAD_TITLES

    try:  # the roofline and the export's memory estimate read gguf-py's quantization table
        from .roofline import decode_tokens_per_s, roofline, target_for_jetson
    except ImportError as e:  # a runtime-only install: the measurements still run
        log(
            f"no roofline and no memory estimate: they need gguf ({e.name} is not installed; "
            "pip install 'segzero-edge[bench]')"
        )
        roofline = None  # type: ignore[assignment]

    if cfg.iters < 1 or cfg.warmup < 0 or cfg.decode_tokens < 1:
        raise ValueError("need iters >= 1, warmup >= 0 and decode_tokens >= 1")
    bad = [s for s in cfg.sides if s not in SIDES]
    if bad or not cfg.sides:
        raise ValueError(f"unknown side(s) {bad}; choose from {', '.join(SIDES)}")
    check_reasoner_shapes_sides(cfg)
    t_run = time.perf_counter()
    fp, info = fingerprint()
    here = cfg.target
    if here is None and roofline is not None:
        here = target_for_jetson(info.get("jetson_model"), host_memory_gb())
    threads = cfg.threads or f"all {os.cpu_count()}"
    log(
        f"segzero-edge bench on {fp}: {_case_model(cfg)} shapes, sides {', '.join(cfg.sides)}; "
        f"{cfg.iters} iterations after {cfg.warmup} warm-up per workload "
        f"({', '.join(f'{w} = {WORKLOAD_TITLES[w]}' for w in cfg.inputs.workloads)}), "
        f"{cfg.decode_tokens} decode tokens (EOS ignored), {threads} thread(s) per side"
    )
    load_start = _load()
    if load_start and load_start > (os.cpu_count() or 1):
        log(
            f"warning: load average {load_start:.1f} > {os.cpu_count()} cores: other work "
            "competes for the CPU; absolute times are inflated, multi-thread ones most "
            "(try --threads 1)"
        )
    bw = measure_bandwidth(cfg.bandwidth_mib)
    log(
        f"memory bandwidth (one-thread {cfg.bandwidth_mib} MiB copy, best of "
        f"{int(bw['repeats'])}): {bw['gbs']:.1f} GB/s"
    )
    sides = cfg.sides
    if cfg.bundle is not None and "reference" in sides:
        log("--bundle: no reference side (it needs the source models)")
        sides = tuple(x for x in sides if x != "reference")
        if not sides:
            raise ValueError("--bundle measures the runtime and stock sides, not the reference")
    cases_cfg = _case_configs(cfg, log)
    cases = []
    for name, case_cfg in cases_cfg:
        log(f"case {name}")
        case: dict[str, Any] = {"name": name, "sam2_config": case_cfg["sam2_config"]}
        for side in sides:
            case[side] = run_side(side, case_cfg, cfg.timeout_s, log)
        case["ratios"] = case_ratios(case)
        main = case.get("runtime") or case[sides[0]]
        if case.get("runtime"):
            if roofline is not None:
                case["memory"] = memory_vs_measured(case_cfg, case["runtime"])
            if cfg.overlap_check and "single" in cfg.inputs.workloads:
                case["overlap"] = _overlap_check(case_cfg, case["runtime"], cfg, log)
        if roofline is not None:
            work = _roofline(case_cfg, int(main["prompt_tokens"]), cfg)
            roof = roofline(work)
            main_stats = workload_stats(main, "single") or workload_stats(
                main, cfg.inputs.workloads[0]
            )
            assert main_stats is not None
            measured = {k: v["p50"] for k, v in main_stats.items()}
            tps_ceiling_here = decode_tokens_per_s(work, bw["gbs"])
            case["roofline"] = roof
            case["this_machine"] = {
                "bandwidth_gbs": bw["gbs"],
                "decode_ceiling_tokens_per_s": tps_ceiling_here,
                "decode_fraction_of_bandwidth": {
                    s: workload_stats(case[s], cfg.inputs.workloads[0])["decode_tokens_per_s"][
                        "p50"
                    ]
                    / tps_ceiling_here
                    for s in sides
                },
            }
            if here:
                from .roofline import fraction_of_ceiling

                case["fraction_of_ceiling"] = fraction_of_ceiling(measured, roof[here]["floors_s"])
        for w in cfg.inputs.workloads:
            log("")
            log(ratio_table(case, w))
        log("")
        log(memory_table(case))
        ov = overlap_table(case)
        if ov:
            log(ov)
        if roofline is not None:
            log("")
            log(
                f"roofline floors (ms) for these shapes; measured = {main['side']} p50 "
                f"(one query per new frame)" + (f"; fraction of the {here} ceiling" if here else "")
            )
            log(roofline_table(roof, measured, here))
            frac = case["this_machine"]["decode_fraction_of_bandwidth"]
            log(
                f"this machine: bandwidth ceiling {tps_ceiling_here:.1f} tok/s at "
                f"{bw['gbs']:.1f} GB/s ({work.decode_weight_bytes / 1e6:.1f} MB read per token); "
                "decode reaches " + ", ".join(f"{s} {v:.1%}" for s, v in frac.items())
            )
        log("")
        cases.append(case)
    now = _dt.datetime.now(_dt.timezone.utc)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "device_fingerprint": fp,
        "device": info,
        "target": here,
        "created_at": now.isoformat(timespec="seconds"),
        "config": cfg.to_json(),
        "bandwidth": bw,
        "cpu_count": os.cpu_count(),
        "load_average": {"start": load_start, "end": _load()},
        "cases": cases,
        "wall_s": time.perf_counter() - t_run,
    }
    label = "bundle" if cfg.bundle is not None else cfg.shapes
    if (
        cfg.bundle is None
        and cfg.shapes == "real"
        and cfg.reasoner_shapes != DEFAULT_REASONER_SHAPES
    ):
        label = f"real-{cfg.reasoner_shapes}"
    stem = f"bench-{fp}-{label}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    json_path = cfg.out_dir / f"{stem}.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))
    doc["json_path"] = str(json_path)
    log(f"wrote {json_path}")
    if cfg.plot:
        from .plot import plot_run

        try:
            png = plot_run(doc, cfg.out_dir / f"{stem}.png")
        except ImportError as e:  # matplotlib: the [bench] extra
            log(f"no plot: {e.name} is not installed (pip install 'segzero-edge[bench]')")
        else:
            doc["png_path"] = str(png)
            log(f"wrote {png}")
    log(f"bench took {time.perf_counter() - t_run:.0f} s")
    return doc
