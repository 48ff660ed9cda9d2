"""This runtime's side: llama.cpp reasoner (GGUF) + onnxruntime SAM2 + segzero_edge.pixels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .measure import GpuMemorySampler, aggregate, peak_rss_mib, reset_peak_rss
from .workload import BenchInputs


def fixed_length_reasoner(model: Path, mmproj: Path, tokens: int, **options: Any) -> Any:
    """A ``LlamaCppReasoner`` that decodes exactly ``tokens`` tokens (EOS and stops ignored).

    Greedy, no grammar: the same work per token as ``transformers`` ``generate`` with
    ``min_new_tokens == max_new_tokens``, so random-weight models give comparable timings.
    """
    from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner

    # every iteration runs on the same frame: without this the 2nd.. would restore the cached
    # image prefix (benchmarks/multiquery.py measures that) instead of timing a first query
    options.setdefault("prefix_cache_mb", 0)
    return LlamaCppReasoner(
        model, mmproj, max_new_tokens=tokens, grammar=False, ignore_eos=True, **options
    )


def run_runtime(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm-up + measured iterations of the runtime pipeline, stage by stage."""
    import numpy as np

    from segzero_edge import pixels
    from segzero_edge.families import get_family
    from segzero_edge.segmenter.auto import open_segmenter
    from segzero_edge.segmenter.decode import backend_decoder, decode_objects
    from segzero_edge.types import ObjectPrompt

    inp = BenchInputs(**cfg["inputs"])
    threads = cfg.get("threads")
    img = inp.image()
    hw = img.shape[:2]
    family = get_family(inp.family)
    prompt = family.build_prompt(inp.query)
    obj = ObjectPrompt(box=tuple(inp.box()), points=(tuple(inp.point()),))  # type: ignore[arg-type]
    reset_peak_rss()
    with GpuMemorySampler() as gpu:
        t0 = time.perf_counter()
        reasoner = fixed_length_reasoner(
            Path(cfg["reasoner_gguf"]),
            Path(cfg["mmproj_gguf"]),
            inp.decode_tokens,
            n_threads=threads,
            n_ctx=int(cfg.get("n_ctx", 4096)),
            n_gpu_layers=int(cfg.get("n_gpu_layers", -1)),
        )
        # the folder of the ONNX graphs: TensorRT when engines for this device sit beside them
        segmenter = open_segmenter(
            Path(cfg["sam2_encoder"]).parent,
            backend=cfg.get("segmenter_backend", "auto"),
            **({"threads": threads} if threads else {}),
        )
        load_s = time.perf_counter() - t0
        rows = []
        tokens = []
        for i in range(cfg["warmup"] + cfg["iters"]):
            row: dict[str, float] = {}
            t_start = time.perf_counter()
            r_in = pixels.preprocess_reasoner(img)
            row["preprocess"] = time.perf_counter() - t_start
            out = reasoner.generate(r_in, prompt)
            for k in ("vision_encode", "prefill", "decode"):
                row[k] = out.timings[k]
            t = time.perf_counter()
            sam_in = pixels.preprocess_sam(img)
            row["preprocess"] += time.perf_counter() - t
            t = time.perf_counter()
            emb = segmenter.encode(sam_in)
            row["sam_encode"] = time.perf_counter() - t
            t = time.perf_counter()
            decoded = decode_objects([obj], family.sam2, backend_decoder(segmenter, emb, hw))
            row["sam_decode"] = time.perf_counter() - t
            t = time.perf_counter()
            mask = pixels.postprocess_masks(np.stack(decoded.masks), hw).mask
            row["postprocess"] = time.perf_counter() - t
            row["total"] = time.perf_counter() - t_start
            row["decode_tokens_per_s"] = out.n_generated_tokens / max(out.timings["decode"], 1e-9)
            if out.n_generated_tokens != inp.decode_tokens:
                raise RuntimeError(
                    f"llama.cpp decoded {out.n_generated_tokens} tokens, not the forced "
                    f"{inp.decode_tokens}: the fixed-length option no longer works with "
                    "LlamaCppReasoner (see benchmarks/runtime_side.py)"
                )
            tokens.append((out.n_prompt_tokens, out.n_generated_tokens))
            assert mask.shape == hw
            if i >= cfg["warmup"]:
                rows.append(row)
        reasoner.close()
        segmenter.close()
    return {
        "side": "runtime",
        "backends": {"reasoner": "llama.cpp (GGUF)", "segmenter": segmenter.name},
        "stats": aggregate(rows),
        "load_s": load_s,
        "prompt_tokens": tokens[-1][0],
        "decode_steps": tokens[-1][1],
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu.peak_mib,
        "gpu_baseline_mib": gpu.baseline_mib,
    }
