"""The vision encoder's speed and fidelity per mmproj type (F16, Q8_0, F32) and thread count.

    python -m segzero_bench.vision_encoder --shapes real [--threads 1 2] [--repeats 2]

Exports the mmproj of the bench model (``segzero-edge bench`` cache) in each type, then per
type and thread count: libmtmd's encode time of one 840 x 840 image (best of ``repeats``
after a warm-up), and its fidelity against the F16 file on the same image: cosine and
relative RMS error of the image embeddings (the 900 x n_embd the LLM reads) and of the text
logits after the image, and whether the greedy next token agrees.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ensure_artifacts

TYPES = ("f16", "q8_0", "f32")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rel_rms(a: np.ndarray, ref: np.ndarray) -> float:
    ref64 = ref.astype(np.float64)
    return float(np.sqrt(np.mean((a - ref64) ** 2)) / np.sqrt(np.mean(ref64**2)))


def measure(
    model: Path, mmprojs: dict[str, Path], threads: list[int], repeats: int, image: np.ndarray
) -> dict[str, Any]:
    """``{type: {"file_mb", "threads": {n: encode seconds}, "fidelity": {...}}}``."""
    from segzero_edge.families import build_prompt
    from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner

    prompt = build_prompt("the knife that can cut the bread", "multi-object")
    out: dict[str, Any] = {}
    ref: dict[str, np.ndarray] = {}
    for kind, path in mmprojs.items():
        row: dict[str, Any] = {"file_mb": path.stat().st_size / 1e6, "threads": {}}
        for n in threads:
            r = LlamaCppReasoner(model, path, n_threads=n, n_ctx=2048, grammar=False)
            try:
                times = []
                for _ in range(repeats + 1):
                    got = r.prompt_logits(image, prompt)
                    times.append(got["vision_encode"])
                row["threads"][n] = min(times[1:]) if repeats else times[0]
            finally:
                r.close()
            print(f"  {kind} {n} thread(s): vision encode {row['threads'][n]:.2f} s", flush=True)
        emb, logits = got["image_embd"], got["text_logits"]
        if kind == "f16":
            ref = {"emb": emb, "logits": logits}
        row["fidelity_vs_f16"] = {
            "image_embd_cosine": _cos(emb, ref["emb"]),
            "image_embd_rel_rms": _rel_rms(emb, ref["emb"]),
            "text_logits_cosine": _cos(logits, ref["logits"]),
            "text_logits_rel_rms": _rel_rms(logits, ref["logits"]),
            "next_token_agrees": bool(np.argmax(logits[-1]) == np.argmax(ref["logits"][-1])),
        }
        out[kind] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", choices=["tiny", "real"], default="tiny")
    ap.add_argument("--cache", type=Path, help="bench model cache (as segzero-edge bench)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--types", nargs="+", choices=TYPES, default=list(TYPES))
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if "f16" not in args.types:
        args.types.insert(0, "f16")  # the fidelity reference
    from segzero_export.mmproj_gguf import convert_mmproj

    art = ensure_artifacts(args.shapes, cache=args.cache)
    mmprojs = {}
    for kind in ["f16", *[t for t in args.types if t != "f16"]]:
        path = (
            art.mmproj_gguf if kind == "f16" else art.mmproj_gguf.with_name(f"mmproj-{kind}.gguf")
        )
        if not path.is_file():
            print(f"exporting the {kind} mmproj to {path}", flush=True)
            convert_mmproj(art.hf_dir, path, outtype=kind, progress=False)
        mmprojs[kind] = path
    image = np.random.default_rng(0).integers(0, 256, (840, 840, 3), np.uint8)
    t0 = time.perf_counter()
    res = measure(art.reasoner_gguf, mmprojs, args.threads, args.repeats, image)
    print(f"{'mmproj':<8}{'MB':>8}" + "".join(f"{f'{n} thr (s)':>12}" for n in args.threads)
          + f"{'embd cos':>11}{'embd rRMS':>11}{'logit cos':>11}{'next tok':>9}")  # fmt: skip
    for kind, row in res.items():
        f = row["fidelity_vs_f16"]
        print(
            f"{kind:<8}{row['file_mb']:8.0f}"
            + "".join(f"{row['threads'][n]:12.2f}" for n in args.threads)
            + f"{f['image_embd_cosine']:11.6f}{f['image_embd_rel_rms']:11.2e}"
            + f"{f['text_logits_cosine']:11.6f}{'yes' if f['next_token_agrees'] else 'NO':>9}"
        )
    print(f"took {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
