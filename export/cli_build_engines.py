"""``segzero-edge build-engines BUNDLE``: SAM2 TensorRT engines for this device (run on it)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _points(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MIN,OPT,MAX (e.g. 1,3,16), got {text!r}"
        ) from None
    return lo, opt, hi


log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .engines import DEFAULT_WORKSPACE_MB

    p = sub.add_parser(
        "build-engines",
        help="build the SAM2 TensorRT engines of a bundle on this device",
        description=(
            "Parse the bundle's sam2_encoder.onnx and sam2_decoder.onnx with TensorRT and write "
            "FP16 engines (normalisation layers kept in FP32) to "
            "BUNDLE/engines/<device-fingerprint>/, with a timing cache and engines.json. "
            "Engines are tied to the GPU and TensorRT version: run this on the Jetson itself "
            "(TensorRT comes with JetPack). Current engines are kept unless --force; they are "
            "rebuilt when TensorRT, the device, the ONNX files or the flags change."
        ),
    )
    p.add_argument("bundle", type=Path, help="bundle folder (segzero-edge export)")
    p.add_argument(
        "--fp32-layers",
        metavar="PATTERN",
        nargs="+",
        action="extend",
        default=[],
        help="also keep layers whose name matches PATTERN (fnmatch, case-insensitive; a plain "
        "word matches anywhere) in FP32; 'type:SOFTMAX' selects a TensorRT layer type",
    )
    p.add_argument("--fp32", action="store_true", help="build FP32 engines (no FP16)")
    p.add_argument("--force", action="store_true", help="rebuild even if the engines are current")
    p.add_argument(
        "--workspace-mb",
        type=int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"TensorRT builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MB})",
    )
    p.add_argument(
        "--points",
        type=_points,
        default=None,
        metavar="MIN,OPT,MAX",
        help="decoder optimisation profile for the number of prompt points (default 1,3,16)",
    )
    p.add_argument(
        "--prompts",
        type=_points,
        default=None,
        metavar="MIN,OPT,MAX",
        help="decoder optimisation profile for the prompts (objects of one answer) decoded in "
        "one call (default 1,1,16)",
    )
    p.set_defaults(func=run, log_default=logging.INFO)  # a long build: name its steps


def run(args: argparse.Namespace) -> int:
    from segzero_edge.errors import CommandError

    from .engines import (
        POINTS_PROFILE,
        PROMPTS_PROFILE,
        EngineBuildError,
        TensorRTUnavailable,
        build_engines,
    )

    try:
        result = build_engines(
            args.bundle,
            fp32_layers=tuple(args.fp32_layers),
            fp16=not args.fp32,
            force=args.force,
            workspace_mb=args.workspace_mb,
            points_profile=args.points or POINTS_PROFILE,
            prompts_profile=args.prompts or PROMPTS_PROFILE,
            progress=not args.quiet,
        )
    except (TensorRTUnavailable, EngineBuildError) as e:
        raise CommandError(str(e)) from None
    for name, why in result.built.items():
        log.info("built %s.plan in %.0f s (%s)", name, result.seconds[name], why)
    if not result.built:
        log.info("engines are current; nothing to build (use --force to rebuild)")
    log.info(
        "next: segzero-edge doctor --bundle %s (checks the engines are current here)", args.bundle
    )
    print(result.directory)
    return 0
