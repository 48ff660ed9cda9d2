"""Quantize a GGUF with llama.cpp (``llama_model_quantize`` through llama-cpp-python)."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segzero_edge.fileio import atomic_path

QTYPES: dict[str, int] = {
    # name -> llama_ftype (llama.h)
    "F32": 0,
    "F16": 1,
    "Q8_0": 7,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q5_K_M": 17,
    "Q6_K": 18,
    "BF16": 32,
}
"""Supported target types; Q4_K_M is the INT4 default, Q8_0 / F16 are for fidelity checks."""

LOG_LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warn", 4: "error", 5: "cont"}
"""ggml_log_level values (ggml.h; the comment in llama_cpp/_logger.py predates a renumbering)."""


@contextmanager
def capture_llama_log() -> Iterator[list[tuple[str, str]]]:
    """Collect llama.cpp / ggml log lines as ``(level, text)`` while the block runs.

    Replaces llama-cpp-python's log callback for the duration (nothing is printed) and puts it
    back afterwards. ``cont`` lines carry the level of the line they continue.
    """
    import llama_cpp
    import llama_cpp._logger as lp_logger

    lines: list[tuple[str, str]] = []

    @llama_cpp.llama_log_callback
    def _callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        name = LOG_LEVELS.get(level, str(level))
        decoded = text.decode("utf-8", errors="replace")
        if name == "cont" and lines:
            lines[-1] = (lines[-1][0], lines[-1][1] + decoded)
        else:
            lines.append((name, decoded))

    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(lp_logger.llama_log_callback, ctypes.c_void_p(0))


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

    Writes ``dst`` under a temporary name first and renames it when llama.cpp succeeds.
    ``nthread <= 0`` lets llama.cpp use every core.
    """
    key = qtype.upper()
    if key not in QTYPES:
        raise ValueError(f"unknown quantization type {qtype!r}; choose one of {', '.join(QTYPES)}")
    src, dst = Path(src), Path(dst)
    _check_gguf(src)
    if src.resolve() == dst.resolve():
        raise ValueError(f"quantize_gguf: source and destination are the same file: {src}")

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QTYPES[key]
    params.nthread = nthread
    with atomic_path(dst) as tmp:
        with capture_llama_log() as log:
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
