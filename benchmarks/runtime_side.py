"""This runtime's side: ``SegZeroEdge.segment()`` on the GGUF pair and the SAM2 graphs.

The pipeline runs as a robot runs it (overlap policy, frame cache, answer parsing, object
loop, native pixel code); the only benchmark hooks are :mod:`segzero_bench.hooks` (forced
decode length, the workload's answer text). Per-stage figures are ``Segmentation.timings``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.reasoner.defaults import DEFAULT_N_CTX

from .hooks import CannedAnswer, FixedLengthReasoner
from .measure import GpuMemorySampler, peak_rss_mib, reset_peak_rss
from .workload import BenchInputs, run_workloads


def open_pipeline(cfg: dict[str, Any], inp: BenchInputs) -> Any:
    """``SegZeroEdge`` on ``cfg``'s files with the benchmark hooks; threads split as
    ``open_backends`` splits them when overlapping on the CPU."""
    from segzero_edge import SegZeroEdge
    from segzero_edge.placement import default_overlap, split_threads
    from segzero_edge.segmenter.auto import open_segmenter

    threads = int(cfg.get("threads") or os.cpu_count() or 1)
    n_gpu_layers = int(cfg.get("n_gpu_layers", -1))
    import llama_cpp

    reasoner_device = "gpu" if n_gpu_layers and llama_cpp.llama_supports_gpu_offload() else "cpu"
    sam_threads = reasoner_threads = threads
    seg_backend = cfg.get("segmenter_backend", "auto")
    # the folder of the ONNX graphs: TensorRT when engines for this device sit beside them
    seg_dir = Path(cfg["sam2_encoder"]).parent
    overlap = inp.overlap
    if overlap and reasoner_device == "cpu":
        reasoner_threads, sam_threads = split_threads(threads)
    segmenter = open_segmenter(seg_dir, backend=seg_backend, threads=sam_threads)
    if overlap is None:
        overlap = default_overlap(reasoner_device, segmenter.device_kind)
    if not (overlap and segmenter.device_kind == "cpu"):
        reasoner_threads = threads
    reasoner = FixedLengthReasoner(
        Path(cfg["reasoner_gguf"]),
        Path(cfg["mmproj_gguf"]),
        tokens=inp.decode_tokens,
        n_threads=reasoner_threads,
        n_ctx=int(cfg.get("n_ctx", DEFAULT_N_CTX)),
        n_gpu_layers=n_gpu_layers,
    )
    model = SegZeroEdge(CannedAnswer(reasoner), segmenter, family=inp.family, overlap=overlap)
    model.bench_threads = {"reasoner": reasoner_threads, "segmenter": sam_threads}
    return model


def run_runtime(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm-up + measured iterations of each workload through ``SegZeroEdge.segment()``."""
    inp = BenchInputs(**cfg["inputs"])
    reset_peak_rss()
    prompt_tokens: list[int] = []
    with GpuMemorySampler() as gpu:
        t0 = time.perf_counter()
        model = open_pipeline(cfg, inp)
        load_s = time.perf_counter() - t0

        def call(
            frame: np.ndarray, query: str, n_objects: int, new_frame: bool
        ) -> dict[str, float]:
            model.reasoner.answer = inp.answer(n_objects)
            t_call = time.perf_counter()
            res = model.segment(frame, query)
            wall = time.perf_counter() - t_call
            if not res.ok or len(res.objects) != n_objects:
                raise RuntimeError(f"segment() gave {res.status} with {len(res.objects)} objects")
            if res.mask.shape != frame.shape[:2]:
                raise RuntimeError(f"mask {res.mask.shape} for a {frame.shape} frame")
            t = res.timings
            if res.generated_tokens != inp.decode_tokens:
                raise RuntimeError(
                    f"decoded {res.generated_tokens} tokens, not {inp.decode_tokens}"
                )
            row = {
                "preprocess": t["preprocess"] + t.get("sam_preprocess", 0.0),
                **{k: t[k] for k in ("vision_encode", "prefill", "decode", "reason")},
                "sam_decode": t["sam_decode"],
                "postprocess": t["postprocess"],
                "sam_wait": t["sam_wait"],
                "total": t["total"],
                "call_wall": wall,
                "decode_tokens_per_s": res.generated_tokens / max(t["decode"], 1e-9),
                "overlap": float(res.overlap),
                "objects": float(len(res.objects)),
            }
            if "sam_encode" in t and not res.sam_cache_hit:
                row["sam_encode"] = t["sam_encode"]
            prompt_tokens.append(model.reasoner.last.n_prompt_tokens)
            return row

        workloads = run_workloads(call, inp, cfg["warmup"], cfg["iters"])
        backends = {
            "reasoner": f"llama.cpp (GGUF, {model.reasoner.device_kind})",
            "segmenter": model.segmenter.name,
            "overlap": model.overlap,
            "devices": {
                "reasoner_device": model.reasoner.device_kind,
                "segmenter_device": model.segmenter.device_kind,
            },
            "threads": model.bench_threads,
        }
        model.close()
    return {
        "side": "runtime",
        "timed": "SegZeroEdge.segment",
        "backends": backends,
        "workloads": workloads,
        "load_s": load_s,
        "prompt_tokens": prompt_tokens[-1],
        "decode_steps": inp.decode_tokens,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu.peak_mib,
        "gpu_baseline_mib": gpu.baseline_mib,
    }
