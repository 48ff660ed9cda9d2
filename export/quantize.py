"""Quantize a GGUF with llama.cpp (``llama_model_quantize`` through llama-cpp-python).

:data:`QUANT_TYPES` is the one list of the reasoner's supported types: the exporter, the
memory estimate (``segzero_export.memory``), the CLI and the roofline (``segzero_bench``) all
read it. File types are gguf-py's ``LlamaFileType`` (llama.cpp's ``llama_ftype``, llama.h).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import gguf

from segzero_edge.fileio import atomic_path


def _bits(qtype: gguf.GGMLQuantizationType) -> float:
    """Stored bits per weight of one ggml type (``GGML_QUANT_SIZES``: block, bytes per block)."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return type_size * 8 / block


@dataclass(frozen=True)
class QuantType:
    """One supported reasoner type.

    ``file_type``: the GGUF's ``general.file_type`` (``gguf.LlamaFileType``).
    ``bits_per_weight``: average stored bits per weight of the layers' matrices.
    ``output_bits``: stored bits per weight of the output (LM head) matrix.
    """

    file_type: gguf.LlamaFileType
    bits_per_weight: float
    output_bits: float


_G = gguf.GGMLQuantizationType
_F = gguf.LlamaFileType
QUANT_TYPES: dict[str, QuantType] = {
    # Q4_K_M (llama.cpp's llama-quant.cpp) stores the matrices as Q4_K, attn_v / ffn_down as Q6_K
    # in about half the layers, and the output matrix as Q6_K: 4.85 bits on average.
    "Q4_K_M": QuantType(_F.MOSTLY_Q4_K_M, 4.85, _bits(_G.Q6_K)),
    "Q6_K": QuantType(_F.MOSTLY_Q6_K, _bits(_G.Q6_K), _bits(_G.Q6_K)),
    "Q8_0": QuantType(_F.MOSTLY_Q8_0, _bits(_G.Q8_0), _bits(_G.Q8_0)),
    "F16": QuantType(_F.MOSTLY_F16, _bits(_G.F16), _bits(_G.F16)),
    "BF16": QuantType(_F.MOSTLY_BF16, _bits(_G.BF16), _bits(_G.BF16)),
    "F32": QuantType(_F.ALL_F32, _bits(_G.F32), _bits(_G.F32)),
}
"""Supported reasoner types; Q4_K_M is the INT4 default, Q8_0 / F16 are for fidelity checks."""

QTYPES: dict[str, gguf.LlamaFileType] = {name: q.file_type for name, q in QUANT_TYPES.items()}
"""Type name -> ``llama_ftype`` passed to ``llama_model_quantize``."""


def quant_type(name: str) -> str:
    """The canonical (upper-case) name of a supported type; ValueError naming the choices."""
    key = str(name).upper()
    if key not in QUANT_TYPES:
        raise ValueError(
            f"unknown quantization type {name!r}; choose one of {', '.join(QUANT_TYPES)}"
        )
    return key


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (bad magic)")


def quantize_gguf(
    src: Path | str, dst: Path | str, qtype: str = "Q4_K_M", *, nthread: int = 0
) -> Path:
    """Quantize the GGUF ``src`` (F32/F16/BF16) to ``qtype`` at ``dst``; returns ``dst``.

    ``qtype``: a :data:`QUANT_TYPES` name (case-insensitive). llama.cpp's own
    ``llama_model_quantize`` (as ``llama-quantize``) picks each tensor's type. Writes ``dst``
    under a temporary name first and renames it when llama.cpp succeeds. ``nthread <= 0``
    lets llama.cpp use every core. Raises ``FileNotFoundError`` (no ``src``), ``ValueError``
    (unknown type, not a GGUF, ``dst`` is ``src``) and ``RuntimeError`` with llama.cpp's last
    warnings and errors when it fails.
    """
    key = quant_type(qtype)
    src, dst = Path(src), Path(dst)
    _check_gguf(src)
    if src.resolve() == dst.resolve():
        raise ValueError(f"quantize_gguf: source and destination are the same file: {src}")

    import llama_cpp

    from segzero_edge.reasoner.llama_log import capture_log
    from segzero_edge.reasoner.llama_system import ensure_cpu_backend

    ensure_cpu_backend()  # a GGML_BACKEND_DL build has no CPU backend until one is loaded
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(QTYPES[key])
    params.nthread = nthread
    with atomic_path(dst) as tmp:
        with capture_log() as log:
            rc = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if rc != 0 or tmp.stat().st_size == 0:
            errors = [t.strip() for lvl, t in log if lvl in ("error", "warn")][-5:]
            raise RuntimeError(
                f"llama.cpp failed to quantize {src} to {key} (code {rc}): "
                + (" | ".join(errors) or "no error message")
            )
    return dst
