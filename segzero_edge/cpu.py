"""What this CPU can execute, against what a native build needs (a leaf module).

A library compiled for a newer instruction set than the CPU has dies with SIGILL the first time
it runs such an instruction. The runtime checks before it runs native code: the kernels'
``-march`` (:data:`MARCH_NEEDS`, the x86-64 psABI microarchitecture levels) and llama.cpp's
reported CPU features (:data:`LLAMA_FEATURE_FLAGS`) against the CPU flags Linux lists in
``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM). Where the flags cannot be read the
check passes (nothing to go on).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# -march level -> /proc/cpuinfo flags it requires. x86-64-v3 as defined by the x86-64 psABI
# (AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT = "abm", MOVBE); armv8.2-a: Advanced SIMD and the
# LSE atomics GCC may emit for it.
MARCH_NEEDS: dict[str, frozenset[str]] = {
    "x86-64-v3": frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe"}),
    "armv8.2-a": frozenset({"asimd", "atomics"}),
}

# llama.cpp feature name (llama_print_system_info) -> /proc/cpuinfo flag
LLAMA_FEATURE_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "AVX_VNNI": "avx_vnni",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
    "AMX_TILE": "amx_tile",
    "NEON": "asimd",
    "DOTPROD": "asimddp",
    "FP16_VA": "asimdhp",
    "MATMUL_INT8": "i8mm",
    "SVE": "sve",
    "SME": "sme",
}


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The first ``flags`` (x86) or ``Features`` (ARM) line of ``/proc/cpuinfo`` as a set."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's flags; empty when ``/proc/cpuinfo`` cannot be read (not Linux)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        return frozenset()


def missing_for_march(march: str, flags: frozenset[str] | None = None) -> list[str]:
    """Flags that code built with ``-march=<march>`` needs and this CPU lacks (``[]`` when the
    level is unknown or the flags cannot be read)."""
    have = cpu_flags() if flags is None else flags
    if not have:
        return []
    return sorted(MARCH_NEEDS.get(march, frozenset()) - have)


def missing_llama_features(
    features: dict[str, str], flags: frozenset[str] | None = None
) -> list[str]:
    """llama.cpp features that are compiled in (value ``1``) and that this CPU lacks."""
    have = cpu_flags() if flags is None else flags
    if not have:
        return []
    return sorted(
        name
        for name, value in features.items()
        if value == "1" and name in LLAMA_FEATURE_FLAGS and LLAMA_FEATURE_FLAGS[name] not in have
    )
