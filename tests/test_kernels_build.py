"""Native build checks: CMake CPU twin, nvcc compile of the CUDA sources, the C ABI."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from segzero_edge import native

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("87", "90")  # Jetson Orin, Hopper


def test_kernels_nvcc_compiles_cuda_sources(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: CUDA sources not compiled (CPU twin only)")
    obj = tmp_path / "kernels.o"
    cmd = [nvcc, "-c", str(ROOT / "csrc" / "kernels.cu"), "-I", str(ROOT / "csrc"), "-O3",
           "-std=c++17", "--fmad=false", "-Xcompiler=-fPIC", "-o", str(obj)]  # fmt: skip
    for arch in ARCHS:
        cmd += [f"--generate-code=arch=compute_{arch},code=sm_{arch}"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    print(f"nvcc sm_{'/sm_'.join(ARCHS)} compile: {took:.1f} s")
    assert run.returncode == 0, f"nvcc failed:\n{run.stderr}"
    assert obj.stat().st_size > 0
    assert "warning" not in run.stderr.lower(), run.stderr


def half_test_values() -> np.ndarray:
    """float32 values around every float16 rounding edge: ties, subnormals, overflow, NaN."""
    rng = np.random.default_rng(0)
    halves = np.arange(0, 0x7C01, dtype=np.uint16).view(np.float16).astype(np.float32)
    mids = (halves[:-1] + halves[1:]) / 2  # exact ties (float32 holds them)
    bits = mids.view(np.uint32)
    near = np.concatenate([bits - 1, bits + 1]).view(np.float32)
    rand = rng.uniform(-3, 3, 100_000).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65519.0, 65520.0, 1e-8, 2.0**-25], np.float32)
    v = np.concatenate([halves, mids, near, rand, special])
    return np.concatenate([v, -v]).astype(np.float32)


def test_kernels_pixel_math_is_plain_cpp(tmp_path: Path) -> None:
    """The shared header compiles as plain C++ (no CUDA); float_to_half == numpy astype."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler found")
    src = tmp_path / "t.cpp"
    src.write_text(
        '#include "pixel_math.h"\n#include <cstdio>\n'
        "int main() { float f; while (std::fread(&f, 4, 1, stdin) == 1) {"
        " uint16_t h = sz::float_to_half(f); std::fwrite(&h, 2, 1, stdout); } }\n"
    )
    exe = tmp_path / "t"
    build = subprocess.run(
        [cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", str(ROOT / "csrc"), str(src),
         "-o", str(exe)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    values = half_test_values()
    run = subprocess.run([str(exe)], input=values.tobytes(), capture_output=True, timeout=60)
    got = np.frombuffer(run.stdout, dtype=np.uint16)
    with np.errstate(over="ignore"):
        expect = values.astype(np.float16).view(np.uint16)
    is_nan = np.isnan(values)  # any NaN half will do (payloads differ)
    assert got.size == expect.size and np.isnan(got[is_nan].view(np.float16)).all()
    bad = np.flatnonzero((got != expect) & ~is_nan)
    print(f"float_to_half: {values.size} values, {bad.size} differ from numpy")
    assert bad.size == 0, f"e.g. {values[bad[:5]]}"


def test_kernels_cpu_build_exports_c_abi(native_cpu_lib: Path) -> None:
    ok, why = native.available()
    print(f"native: {why}")
    assert ok and str(native_cpu_lib) in why
    lib = ctypes.CDLL(str(native_cpu_lib))
    for name in native._SIGNATURES:
        assert hasattr(lib, name), f"{name} not exported"
    exported = subprocess.run(["nm", "-D", "--defined-only", str(native_cpu_lib)],
                              capture_output=True, text=True).stdout  # fmt: skip
    funcs = [ln.split()[-1] for ln in exported.splitlines() if " T " in ln]
    assert funcs and all(f.startswith("sz_") for f in funcs), f"unexpected exports: {funcs}"


def test_kernels_cpu_build_cuda_entry_points_say_no_cuda(native_cpu_lib: Path) -> None:
    lib = ctypes.CDLL(str(native_cpu_lib))
    if lib.sz_built_with_cuda():
        pytest.skip("the library under test was built with CUDA")
    lib.sz_last_error.restype = ctypes.c_char_p
    assert lib.sz_preprocess_cuda(None, 1, 1, 3, 0, None, 1024, 0, None, 840, 0, None) == -3
    assert b"without CUDA" in lib.sz_last_error()
    assert native.cuda_available() is False
