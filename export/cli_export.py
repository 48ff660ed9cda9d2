"""``segzero-edge export``: HF Qwen2.5-VL + SAM2 checkpoint -> bundle for a target device."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segzero_edge.families import FAMILIES
from segzero_edge.reasoner.defaults import DEFAULT_N_CTX

from .targets import TARGET_NAMES

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a reasoner + SAM2 into a bundle (needs the [export] extra)",
        description=(
            "Convert a Qwen2.5-VL checkpoint (local folder or hub id) to GGUF + INT4 and a SAM2 "
            "checkpoint (.pt or a name such as sam2.1_hiera_tiny) to ONNX, and write the bundle "
            "atomically. Refuses a bundle that will not fit the target's memory budget. "
            "TensorRT engines are built later, on the device: segzero-edge build-engines."
        ),
    )
    p.add_argument("--reasoner", help="Qwen2.5-VL folder or hub id (e.g. Ricky06662/Seg-Zero-7B)")
    p.add_argument(
        "--segmenter",
        help="SAM2 .pt checkpoint or name: sam2_hiera_large (SAM2.0, what both Seg-Zero families "
        "were evaluated with) or sam2.1_hiera_* (SAM2.1)",
    )
    p.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        help="model family of the reasoner (prompt, answer grammar, SAM2 prompt); known hub ids "
        "set it (Ricky06662/Seg-Zero-7B: segzero-v1, Ricky06662/VisionReasoner-7B: "
        "multi-object), a local folder or another id needs it; --tiny: default multi-object",
    )
    p.add_argument("--target", default="cpu", choices=TARGET_NAMES, help="device (memory budget)")
    try:  # gguf comes with the [export] extra; without it `run` says what to install
        from .quantize import QUANT_TYPES

        quant_choices: list[str] | None = list(QUANT_TYPES)
    except ImportError:
        quant_choices = None
    p.add_argument(
        "--quant", default="Q4_K_M", type=str.upper, choices=quant_choices, help="reasoner type"
    )
    p.add_argument(
        "--mmproj-type",
        default="f16",
        choices=["f16", "q8_0", "f32"],
        help="vision encoder weights (q8_0 is smaller; compare: segzero_bench.vision_encoder)",
    )
    p.add_argument("--sam2-config", help="SAM2 config name when the checkpoint name hides it")
    p.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="reasoner context length")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing bundle folder (only one segzero-edge wrote, or an empty one)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="build the demo bundle from tiny random models (no downloads; masks meaningless)",
    )
    p.add_argument(
        "--arch",
        default="qwen25vl",
        choices=["qwen25vl", "qwen3vl"],
        help="--tiny only: the tiny reasoner's backbone (Qwen2.5-VL or Qwen3-VL; the default "
        "family follows: multi-object / qwen3vl-grounding)",
    )
    p.set_defaults(func=run, log_default=logging.INFO)  # a long build: name its steps


def run(args: argparse.Namespace) -> int:
    try:
        from .bundle import build_tiny_bundle, export_bundle
    except ImportError as e:
        raise ValueError(
            f"export needs the [export] extra: pip install 'segzero-edge[export]' ({e})"
        ) from None
    if args.tiny:
        out = build_tiny_bundle(
            args.output, family=args.family, overwrite=args.force, arch=args.arch
        )
    else:
        if not args.reasoner or not args.segmenter:
            raise ValueError("--reasoner and --segmenter are required (or --tiny)")
        out = export_bundle(
            args.reasoner,
            args.segmenter,
            args.output,
            family=args.family,
            target=args.target,
            quant=args.quant,
            sam2_config=args.sam2_config,
            n_ctx=args.n_ctx,
            overwrite=args.force,
            mmproj_type=args.mmproj_type,
        )
    log.info("%s", summary(out))
    return 0


def summary(bundle: Path) -> str:
    """The export's last lines: the bundle, its size, the memory estimate against the
    target's budget, and the command to run next."""
    from segzero_edge.layout import MANIFEST
    from segzero_edge.manifest import read_manifest

    manifest = read_manifest(Path(bundle) / MANIFEST)
    size = sum(entry.size for entry in manifest.files.values())
    mem = manifest.memory_gb or {}
    fits = "fits" if mem["fits"] else "does NOT fit"
    lines = [
        f"bundle written: {bundle} ({size / 1e6:.1f} MB in {len(manifest.files)} files)",
        f"memory: estimated {mem['total']:.2f} GB on {mem['target']}, {fits} its "
        f"{mem['budget']:.2f} GB budget",
    ]
    if mem["target"] != "cpu":
        lines.append(f"next, on the Jetson: segzero-edge build-engines {bundle}")
    lines.append(f'next: segzero-edge segment IMAGE "QUERY" --bundle {bundle}')
    return "\n".join(lines)
