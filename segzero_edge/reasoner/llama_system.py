"""llama.cpp's view of this machine: the CPU features it was built for, its extra buffer types,
and whether the reasoner should use them.

llama.cpp places weights in the CPU backend's *extra buffer types* (``CPU_REPACK``; ``AMX`` when
ggml was built with AMX; KleidiAI on some ARM builds) when ``llama_model_params.use_extra_bufts``
is true (its default; ``make_cpu_buft_list`` in llama.cpp's ``src/llama-model.cpp``). The AMX
matrix multiply (``ggml_backend_amx_mul_mat``) crashes with SIGSEGV on the first
``llama_decode`` of a quantized model on some AMX CPUs (llama.cpp issue 20824), so the reasoner
turns the extra buffer types off wherever llama.cpp reports AMX, unless forced on
(``extra_bufts=True`` or ``$SEGZERO_LLAMA_EXTRA_BUFTS=1``).

The CPU features come from llama.cpp itself: ``llama_print_system_info()`` joins every
backend's ``ggml_backend_get_features`` as ``"CPU : SSE3 = 1 | AVX = 1 | ... | CUDA : ... | "``
(``llama_print_system_info`` in llama.cpp's ``src/llama.cpp``). The buffer type names come from
ggml's backend API (``ggml_backend_dev_get_extra_bufts`` through
``ggml_backend_reg_get_proc_address``, as llama.cpp calls it).
"""

from __future__ import annotations

import ctypes
import os
import re
from functools import lru_cache
from typing import Any

from .llama_variants import (
    ENV_EXTRA_BUFTS,
    GGML_BACKEND_DEVICE_TYPE_CPU,
    LoadedVariant,
    ggml_library,
    load_cpu_backend,
)

_MODEL_BUFFER = re.compile(r"\b([A-Za-z0-9_]+) model buffer size =\s*([0-9.]+) MiB")


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """``"CPU : SSE3 = 1 | AVX = 1 | CUDA : ARCHS = 870 | "`` ->
    ``{"CPU": {"SSE3": "1", "AVX": "1"}, "CUDA": {"ARCHS": "870"}}`` (backend -> feature -> value).
    """
    out: dict[str, dict[str, str]] = {}
    backend: dict[str, str] | None = None
    for item in text.split("|"):
        item = item.strip()
        if not item:
            continue
        if " : " in item:  # "<backend> : <first feature>" starts a backend's section
            name, item = (s.strip() for s in item.split(" : ", 1))
            backend = out.setdefault(name, {})
        if backend is None or not item:
            continue
        key, _, value = item.partition("=")
        backend[key.strip()] = value.strip()
    return out


def ensure_cpu_backend() -> LoadedVariant | None:
    """Load the CPU backend variant of a ``GGML_BACKEND_DL`` build (AMX variants only when
    ``$SEGZERO_LLAMA_EXTRA_BUFTS=1``); None for a build with the CPU backend linked in. Raises
    :class:`.llama_variants.CpuVariantError`."""
    return load_cpu_backend(allow_amx=_env_choice() is True)


def system_info() -> str:
    """``llama_print_system_info()`` of the installed llama-cpp-python, decoded."""
    import llama_cpp

    ensure_cpu_backend()

    return bytes(llama_cpp.llama_print_system_info() or b"").decode(errors="replace")


@lru_cache(maxsize=1)
def cpu_features() -> dict[str, str]:
    """The CPU backend's features as llama.cpp reports them (``{"AVX2": "1", ...}``)."""
    return parse_system_info(system_info()).get("CPU", {})


def amx_features(features: dict[str, str]) -> list[str]:
    """The AMX features (``AMX_INT8`` ...) among ``features`` that are on."""
    return sorted(k for k, v in features.items() if k.upper().startswith("AMX") and v != "0")


def _ggml_libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    ensure_cpu_backend()
    return ggml_library("ggml-base"), ggml_library("ggml")


@lru_cache(maxsize=1)
def extra_buffer_types() -> tuple[str, ...]:
    """Names of the CPU device's extra buffer types (e.g. ``("CPU_REPACK",)``, ``"AMX"``).

    Raises ``OSError`` when ggml's libraries cannot be loaded and ``RuntimeError`` when the CPU
    backend does not answer.
    """
    base, ggml = _ggml_libs()
    vp = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.restype = vp
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    base.ggml_backend_dev_backend_reg.restype = vp
    base.ggml_backend_dev_backend_reg.argtypes = [vp]
    base.ggml_backend_reg_get_proc_address.restype = vp
    base.ggml_backend_reg_get_proc_address.argtypes = [vp, ctypes.c_char_p]
    base.ggml_backend_buft_name.restype = ctypes.c_char_p
    base.ggml_backend_buft_name.argtypes = [vp]
    dev = ggml.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)
    if not dev:
        raise RuntimeError("ggml has no CPU device")
    reg = base.ggml_backend_dev_backend_reg(dev)
    addr = base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not addr:
        return ()
    get_extra = ctypes.CFUNCTYPE(ctypes.POINTER(vp), vp)(addr)
    bufts = get_extra(dev)
    names: list[str] = []
    while bufts and bufts[len(names)]:
        names.append(base.ggml_backend_buft_name(bufts[len(names)]).decode())
    return tuple(names)


def _env_choice() -> bool | None:
    raw = os.environ.get(ENV_EXTRA_BUFTS, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"${ENV_EXTRA_BUFTS}={raw!r}: use 1, 0 or auto")


def decide_extra_bufts(
    requested: bool | None = None, features: dict[str, str] | None = None
) -> tuple[bool, str]:
    """``(use_extra_bufts, why)``: ``requested`` when given, else ``$SEGZERO_LLAMA_EXTRA_BUFTS``
    (1/0/auto), else off where llama.cpp reports AMX and llama.cpp's default (on) elsewhere."""
    if requested is not None:
        return bool(requested), f"forced {'on' if requested else 'off'} (extra_bufts=)"
    env = _env_choice()
    if env is not None:
        return env, f"forced {'on' if env else 'off'} by ${ENV_EXTRA_BUFTS}"
    amx = amx_features(cpu_features() if features is None else features)
    if amx:
        return False, (
            f"off: llama.cpp reports {', '.join(amx)} and its AMX kernels crash on some CPUs "
            f"(llama.cpp issue 20824); ${ENV_EXTRA_BUFTS}=1 forces them on"
        )
    return True, "on (llama.cpp's default; no AMX reported)"


def model_buffer_types(log_lines: list[str]) -> dict[str, float]:
    """Buffer type -> MiB from llama.cpp's ``load_tensors: <TYPE> model buffer size = X MiB``
    log lines (e.g. ``{"CPU_Mapped": 80.1, "CPU_REPACK": 40.5}``): where the weights went."""
    out: dict[str, float] = {}
    for line in log_lines:
        m = _MODEL_BUFFER.search(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def cpu_mismatch() -> str | None:
    """Why this llama.cpp build cannot run on this CPU (features compiled in that the CPU
    lacks: the first decode would die with SIGILL), or None."""
    from ..cpu import missing_llama_features

    missing = missing_llama_features(cpu_features())
    if not missing:
        return None
    return (
        f"llama.cpp was built for {', '.join(missing)}, which this CPU lacks; rebuild "
        "llama-cpp-python for it (LLAMA_CMAKE_ARGS with those features OFF, see "
        "scripts/setup.sh)"
    )


def describe() -> dict[str, Any]:
    """Everything above for ``segzero-edge doctor``: features, buffer types, the decision."""
    use, why = decide_extra_bufts()
    loaded = ensure_cpu_backend()
    variant: dict[str, Any] = {"cpu_variant": None}
    if loaded is not None:
        variant = {
            "cpu_variant": loaded.chosen.name,
            "cpu_variant_reason": loaded.reason,
            "cpu_variants": {c.name: c.score for c in loaded.candidates},
        }
    try:
        bufts: list[str] | str = list(extra_buffer_types())
    except (OSError, RuntimeError, AttributeError) as e:
        bufts = f"unknown ({type(e).__name__}: {e})"
    return {
        "system_info": system_info().strip(),
        "cpu_features": cpu_features(),
        "amx": amx_features(cpu_features()),
        "extra_buffer_types": bufts,
        "use_extra_bufts": use,
        "use_extra_bufts_reason": why,
        "cpu_mismatch": cpu_mismatch(),
        **variant,
    }
