"""onnxruntime session options for the SAM2 graphs: encode / decode time per option set.

    python -m segzero_bench.sam2_session [--shapes tiny] [--sam2 sam2.1_hiera_t] [--threads 1 2]

Per option set and thread count: the encoder's time on one 1024 x 1024 input and the
decoder's time for one box + point prompt (best of ``repeats`` after a warm-up), and the
largest difference of the outputs from the default session's (the options must not change
the numbers beyond float32 reordering). ``--int8`` adds the encoder dynamically quantized to
int8 (onnxruntime.quantization), with its feature fidelity (cosine) against float32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ensure_artifacts

OPTION_SETS: dict[str, dict[str, Any]] = {
    "default (ENABLE_ALL)": {},
    "ENABLE_EXTENDED": {"level": "ORT_ENABLE_EXTENDED"},
    "ENABLE_BASIC": {"level": "ORT_ENABLE_BASIC"},
    "no spin-wait": {"config": {"session.intra_op.allow_spinning": "0"}},
    "no mem pattern / arena": {"mem_pattern": False, "arena": False},
}


def session_options(ort: Any, threads: int, spec: dict[str, Any]) -> Any:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    if "level" in spec:
        o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec["level"])
    if "mem_pattern" in spec:
        o.enable_mem_pattern = spec["mem_pattern"]
    if "arena" in spec:
        o.enable_cpu_mem_arena = spec["arena"]
    for k, v in spec.get("config", {}).items():
        o.add_session_config_entry(k, v)
    return o


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def measure(
    encoder: Path, decoder: Path, threads: list[int], repeats: int, int8: bool
) -> dict[str, Any]:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    prompt = {
        "point_coords": np.array([[[256, 256], [768, 768], [512, 512]]], np.float32),
        "point_labels": np.array([[2, 3, 1]], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    }
    providers = ["CPUExecutionProvider"]
    results: dict[str, Any] = {}
    ref: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    sets = dict(OPTION_SETS)
    tmp = tempfile.TemporaryDirectory()
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = Path(tmp.name) / "encoder-int8.onnx"
        quantize_dynamic(str(encoder), str(q), weight_type=QuantType.QInt8)
        sets["encoder int8 (dynamic)"] = {"encoder": q}
    for name, spec in sets.items():
        row: dict[str, Any] = {}
        for n in threads:
            opts = session_options(ort, n, spec)
            enc = ort.InferenceSession(str(spec.get("encoder", encoder)), opts, providers=providers)
            dec = ort.InferenceSession(str(decoder), opts, providers=providers)
            names = [o.name for o in enc.get_outputs()]
            t_enc, feats = _best(lambda enc=enc: enc.run(None, {"image": image}), repeats)
            feeds = {**dict(zip(names, feats, strict=True)), **prompt}
            t_dec, masks = _best(lambda dec=dec, feeds=feeds: dec.run(None, feeds), repeats)
            row[n] = {"encode_s": t_enc, "decode_s": t_dec}
            print(f"  {name}, {n} thread(s): encode {t_enc:.3f} s, decode {t_dec * 1e3:.1f} ms")
        if ref is None:
            ref = (feats, masks)
        row["encoder_max_abs_diff"] = max(
            float(np.abs(a - b).max()) for a, b in zip(feats, ref[0], strict=True)
        )
        row["encoder_min_cosine"] = min(_cos(a, b) for a, b in zip(feats, ref[0], strict=True))
        row["mask_max_abs_diff"] = float(np.abs(masks[0] - ref[1][0]).max())
        results[name] = row
    tmp.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", choices=["tiny", "real"], default="tiny")
    ap.add_argument("--sam2", default="sam2.1_hiera_t")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--int8", action="store_true", help="also the int8 dynamic-quantized encoder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    art = ensure_artifacts(args.shapes, cache=args.cache)
    files = art.sam2[args.sam2]
    res = measure(files["encoder"], files["decoder"], args.threads, args.repeats, args.int8)
    head = f"{'options':<26}" + "".join(
        f"{f'enc {n}t s':>11}{f'dec {n}t ms':>12}" for n in args.threads
    )
    print(head + f"{'enc max|d|':>12}{'enc cos':>10}{'mask max|d|':>12}")
    for name, row in res.items():
        print(
            f"{name:<26}"
            + "".join(
                f"{row[n]['encode_s']:11.3f}{row[n]['decode_s'] * 1e3:12.1f}" for n in args.threads
            )
            + f"{row['encoder_max_abs_diff']:12.2e}{row['encoder_min_cosine']:10.6f}"
            + f"{row['mask_max_abs_diff']:12.2e}"
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
