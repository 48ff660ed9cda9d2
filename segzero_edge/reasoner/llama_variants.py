"""Which CPU kernels llama.cpp runs with: the CPU backend variant of a ``GGML_BACKEND_DL`` build.

llama.cpp built with ``-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON`` ships its CPU backend
as one shared module per x86 micro-architecture level (``libggml-cpu-haswell.so``,
``-skylakex``, ``-icelake``, ``-zen4``, ``-sapphirerapids`` ...; the list is
``ggml/src/CMakeLists.txt``'s ``ggml_add_cpu_backend_variant`` calls) and loads none of them by
itself: ``llama_model_load_from_file`` fails with "no backends are loaded" until the program
calls ``ggml_backend_load`` (``ggml/include/ggml-backend.h``). Each module exports
``ggml_backend_score()``: 0 when this CPU lacks a feature the module was compiled for, else a
number that grows with the features it uses (``ggml_backend_cpu_x86_score`` in
``ggml-cpu/arch/x86/cpu-feats.cpp``, compiled without the module's ISA flags so that asking is
safe on any CPU). ``ggml_backend_load_best`` (``ggml-backend-reg.cpp``) loads the highest score.

This module does the same, with one rule of its own: variants with AMX kernels
(:data:`AMX_VARIANTS`) are skipped unless the extra buffer types are forced on, because the
AMX matrix multiply crashes on some AMX CPUs (llama.cpp issue 20824; see
:mod:`.llama_system`), and without the extra buffer types an AMX variant also loses the
repacked (``CPU_REPACK``) weights. ``$SEGZERO_LLAMA_CPU_VARIANT=<name>`` picks a variant by
name (for measuring one against another; a name this CPU cannot run is an error).

A build with the CPU backend linked in (the x86-64-v3 and Jetson builds of
``scripts/setup.sh``) has no variant modules: :func:`load_cpu_backend` then loads nothing.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CpuVariantError

ENV_VARIANT = "SEGZERO_LLAMA_CPU_VARIANT"
ENV_EXTRA_BUFTS = "SEGZERO_LLAMA_EXTRA_BUFTS"
VARIANT_PREFIX = "libggml-cpu-"
AMX_VARIANTS = frozenset({"sapphirerapids"})
"""Variants compiled with ``AMX_TILE``/``AMX_INT8`` (``ggml/src/CMakeLists.txt``)."""
GGML_BACKEND_DEVICE_TYPE_CPU = 0  # enum ggml_backend_dev_type (ggml-backend.h)


@dataclass(frozen=True)
class CpuVariant:
    """One ``libggml-cpu-<name>.so``: ``score`` is its ``ggml_backend_score()`` on this CPU
    (0: this CPU cannot run it)."""

    name: str
    path: Path
    score: int

    @property
    def amx(self) -> bool:
        return self.name in AMX_VARIANTS


@dataclass(frozen=True)
class LoadedVariant:
    """What :func:`load_cpu_backend` did: the variant loaded and every candidate it saw."""

    chosen: CpuVariant
    candidates: tuple[CpuVariant, ...]
    reason: str


_OUTCOME: list[LoadedVariant | None] = []
"""What :func:`load_cpu_backend` settled on, once it has (empty before): the variant loaded,
or None when there was nothing to load."""


def llama_lib_dir() -> Path:
    """The folder of llama-cpp-python's shared libraries (``$LLAMA_CPP_LIB_PATH`` first, as
    llama-cpp-python itself reads it)."""
    import llama_cpp

    return Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")


def ggml_library(name: str) -> ctypes.CDLL:
    """``libggml`` or ``libggml-base`` (``name`` ``"ggml"``/``"ggml-base"``) as libllama uses it.

    libllama needs ``lib<name>.so.0`` (its ``DT_NEEDED``, found through its ``$ORIGIN``
    RUNPATH). The wheel carries ``lib<name>.so`` beside it as a separate file, not a link, and
    opening that path maps a second copy with a backend registry of its own, which libllama
    never sees. Opening the ``.so.0`` path returns the copy already loaded.
    """
    import llama_cpp  # noqa: F401  (loads libllama and with it the two libraries)

    return ctypes.CDLL(str(llama_lib_dir() / f"lib{name}.so.0"))


def variant_dirs() -> list[Path]:
    """Where a ``GGML_BACKEND_DL`` build of llama-cpp-python keeps its CPU variants: ggml
    installs them to ``CMAKE_INSTALL_BINDIR``, which llama-cpp-python's wheel leaves at
    ``<site-packages>/bin`` (beside ``llama_cpp/``), or the library folder itself."""
    import llama_cpp

    lib = llama_lib_dir()
    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        return [lib]
    return [lib, Path(llama_cpp.__file__).parent.parent / "bin"]


def variant_files(*folders: Path) -> list[Path]:
    """The CPU variant modules (``libggml-cpu-<name>.so``) in ``folders``, sorted by name."""
    found = {p.name: p for f in folders for p in f.glob(f"{VARIANT_PREFIX}*.so") if p.is_file()}
    return [found[k] for k in sorted(found)]


def _score(path: Path) -> int:
    """``ggml_backend_score()`` of one module; the module is unloaded again, as
    ``ggml_backend_load_best`` unloads the ones it does not keep."""
    import _ctypes

    lib = ctypes.CDLL(str(path))
    try:
        fn = lib.ggml_backend_score
        fn.restype = ctypes.c_int
        fn.argtypes = []
        return int(fn())
    except AttributeError:  # not a ggml backend module
        return 0
    finally:
        _ctypes.dlclose(lib._handle)


def scan(*folders: Path) -> list[CpuVariant]:
    """Every variant in ``folders`` with its score on this CPU."""
    out = []
    for path in variant_files(*folders):
        name = path.name[len(VARIANT_PREFIX) : -len(".so")]
        out.append(CpuVariant(name, path, _score(path)))
    return out


def choose(
    candidates: list[CpuVariant], *, wanted: str | None = None, allow_amx: bool = False
) -> tuple[CpuVariant, str]:
    """The variant to load and why. ``wanted`` names one; otherwise the highest score this CPU
    runs, AMX variants left out unless ``allow_amx``. Raises :class:`CpuVariantError`."""
    names = ", ".join(c.name for c in candidates) or "none"
    if wanted:
        match = [c for c in candidates if c.name == wanted]
        if not match:
            raise CpuVariantError(f"${ENV_VARIANT}={wanted!r}: no such variant (have: {names})")
        if match[0].score <= 0:
            raise CpuVariantError(
                f"${ENV_VARIANT}={wanted!r}: this CPU lacks features that variant needs"
            )
        return match[0], f"asked for by ${ENV_VARIANT}"
    runnable = [c for c in candidates if c.score > 0]
    if not runnable:
        raise CpuVariantError(f"no llama.cpp CPU variant runs on this CPU (have: {names})")
    allowed = [c for c in runnable if allow_amx or not c.amx]
    best = max(allowed or runnable, key=lambda c: c.score)
    skipped = [c.name for c in runnable if c.amx and c not in allowed]
    why = "the highest ggml_backend_score this CPU runs"
    if skipped:
        why += (
            f"; {', '.join(skipped)} skipped: its AMX kernels crash on some CPUs (llama.cpp "
            f"issue 20824), ${ENV_EXTRA_BUFTS}=1 allows it"
        )
    return best, why


def _cpu_device_registered(ggml: ctypes.CDLL) -> bool:
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    return bool(ggml.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU))


def load_cpu_backend(*, allow_amx: bool = False) -> LoadedVariant | None:
    """Load llama.cpp's CPU backend variant for this CPU, once per process (``allow_amx``: see
    :func:`choose`; :func:`.llama_system.ensure_cpu_backend` passes the extra-buffer decision).

    Returns None for a build with the CPU backend linked in (nothing to load), else what was
    loaded. Raises :class:`CpuVariantError` when no variant can run here or the one asked for
    by ``$SEGZERO_LLAMA_CPU_VARIANT`` cannot be loaded. Call it before any model is loaded.
    """
    if _OUTCOME:
        return _OUTCOME[0]
    dirs = variant_dirs()
    if not variant_files(*dirs):
        _OUTCOME.append(None)
        return None
    ggml = ggml_library("ggml")
    if _cpu_device_registered(ggml):  # loaded by someone else already: keep theirs
        _OUTCOME.append(None)
        return None
    candidates = scan(*dirs)
    wanted = os.environ.get(ENV_VARIANT, "").strip() or None
    chosen, why = choose(candidates, wanted=wanted, allow_amx=allow_amx)
    ggml.ggml_backend_load.restype = ctypes.c_void_p
    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
    if not ggml.ggml_backend_load(str(chosen.path).encode()):
        raise CpuVariantError(f"ggml_backend_load could not load {chosen.path}")
    loaded = LoadedVariant(chosen, tuple(candidates), why)
    _OUTCOME.append(loaded)
    return loaded
