"""``segzero-edge eval``: gIoU / cIoU of a bundle (or the HF reference) on a ReasonSeg folder,
under Seg-Zero's and LISA's protocols (:mod:`segzero_train.metrics`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segzero_edge.families import FAMILIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate gIoU / cIoU on a ReasonSeg-format folder (--bundle: the [eval] extra; "
        "--hf: [train])",
        description=(
            "Segment text[0] of every sample of a ReasonSeg-format folder (JPG + JSON with "
            "polygons) with a bundle, or with the Hugging Face reference (--hf MODEL_DIR "
            "--sam2 CKPT), and write a JSON report: gIoU and cIoU under Seg-Zero's and LISA's "
            "evaluation protocols (both by default; they differ on ignore pixels, empty masks "
            "and parse failures), the is_sentence splits and one row per sample."
        ),
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="ReasonSeg folder, or a RefCOCO folder (instances.json, refs(umd).p, train2014/)",
    )
    p.add_argument("--split", default="val", help="RefCOCO split (val, test, testA, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="bundle folder (segzero-edge export)")
    src.add_argument("--hf", type=Path, metavar="MODEL_DIR", help="HF Qwen2.5-VL folder")
    p.add_argument("--sam2", type=Path, help="SAM2 checkpoint (.pt) for --hf")
    p.add_argument("--sam2-config", help="SAM2 config name when the file name hides it")
    p.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        help="model family (prompt, grammar, SAM2 prompt, and the reference evaluation script "
        "whose answer rule the segzero protocol applies): required with --hf; overrides the "
        "bundle's manifest with --bundle",
    )
    p.add_argument(
        "--protocol",
        action="append",
        choices=["segzero", "lisa"],
        help="scoring protocol; repeat for both (default: both)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation budget")
    p.add_argument("--device", default="cpu", help="torch device for --hf (cpu, cuda)")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="--hf dtype"
    )
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument("--no-grammar", action="store_true", help="bundle: decode without grammar")
    p.set_defaults(func=run)


def _predictor(args: argparse.Namespace):  # -> (predictor, source dict)
    # a missing module is reported by the CLI with its extra (segzero_edge.errors.COMMAND_EXTRAS)
    from .evaluate import BundlePredictor, HFPredictor

    if args.bundle is not None:
        opts = {"segmenter_backend": args.segmenter_backend, "grammar": not args.no_grammar}
        if args.max_new_tokens is not None:
            opts["max_new_tokens"] = args.max_new_tokens
        if args.family is not None:
            opts["family"] = args.family
        bundle_predictor = BundlePredictor(args.bundle, **opts)
        source = {"kind": "bundle", "bundle": str(args.bundle), **opts}
        source["family"] = bundle_predictor.family.name
        return bundle_predictor, source
    if args.sam2 is None:
        raise ValueError("--hf needs --sam2 CKPT (a SAM2 checkpoint)")
    if args.family is None:
        names = ", ".join(FAMILIES)
        raise ValueError(f"--hf needs --family ({names}): the prompt the checkpoint was trained on")
    predictor = HFPredictor(
        args.hf,
        args.sam2,
        family=args.family,
        sam2_config=args.sam2_config,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        dtype=args.dtype,
    )
    source = {"kind": "hf", "model": str(args.hf), "sam2": str(args.sam2), "device": args.device}
    source["dtype"] = args.dtype
    source["family"] = args.family
    return predictor, source


def run(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise FileNotFoundError(f"data folder not found: {args.data}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    from .evaluate import evaluate_folder, write_report
    from .metrics import format_summary

    predictor, source = _predictor(args)
    try:
        report = evaluate_folder(
            args.data,
            predictor,
            family=source["family"],
            limit=args.limit,
            split=args.split,
            protocols=tuple(dict.fromkeys(args.protocol or ("segzero", "lisa"))),
            progress=not args.quiet,
            source=source,
        )
    finally:
        predictor.close()
    if args.out is not None:
        write_report(report, args.out)
    print(format_summary(report["summary"]))
    if args.out is None:
        json.dump(report["summary"], sys.stdout, indent=1)
        print()
    return 0
