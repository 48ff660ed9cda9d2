"""Qwen2.5-VL checkpoint -> the reasoner's two bundle files: ``reasoner.gguf`` + ``mmproj.gguf``.

``reasoner.gguf`` is the language model quantized to ``quant`` (Q4_K_M by default; the F16
intermediate is deleted unless ``keep_f16``); ``mmproj.gguf`` is the vision tower + merger in
F16 by default (``mmproj_type="q8_0"``: 37% smaller, but slower than F16 on a 2-core Zen 4 CPU
at Qwen2.5-VL-3B shapes; speed and fidelity against F16: ``python -m
segzero_bench.vision_encoder``).
"""

from __future__ import annotations

import os
from pathlib import Path

from segzero_edge.layout import MMPROJ_FILE, REASONER_FILE

F16_FILE = "reasoner-f16.gguf"


def export_reasoner(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    quant: str = "Q4_K_M",
    progress: bool = True,
    keep_f16: bool = False,
    mmproj_type: str = "f16",
) -> dict[str, Path]:
    """Export ``src`` (a local folder or hub id) into ``out_dir``.

    ``quant``: a :data:`segzero_export.quantize.QUANT_TYPES` name; float types are written by
    the converter directly, the others through an F16 intermediate and llama.cpp's quantizer.
    Returns ``{"reasoner": .../reasoner.gguf, "mmproj": .../mmproj.gguf}`` plus
    ``"reasoner_f16"`` when ``keep_f16`` is set and ``quant`` is not F16. Each file is written
    under a temporary name and renamed when complete; existing files are replaced.
    """
    from .hf_source import resolve_model
    from .mmproj_gguf import convert_mmproj
    from .quantize import quant_type, quantize_gguf
    from .reasoner_gguf import OUTTYPES, convert_text_model

    qtype = quant_type(quant)
    model_dir = resolve_model(src)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)

    files: dict[str, Path] = {}
    files["mmproj"] = convert_mmproj(
        model_dir, out / MMPROJ_FILE, outtype=mmproj_type, progress=progress
    )
    if qtype.lower() in OUTTYPES:  # a float type: the converter writes it directly
        files["reasoner"] = convert_text_model(
            model_dir, out / REASONER_FILE, outtype=qtype.lower(), progress=progress
        )
        return files
    f16 = convert_text_model(model_dir, out / F16_FILE, outtype="f16", progress=progress)
    try:
        files["reasoner"] = quantize_gguf(f16, out / REASONER_FILE, qtype)
    finally:
        if not keep_f16:
            f16.unlink(missing_ok=True)
    if keep_f16:
        files["reasoner_f16"] = f16
    return files
