"""Native build checks: CMake flags (ISA, CUDA discovery and architectures), the wheel that
carries the library, nvcc compile of the CUDA sources, the C ABI."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge import native

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("80", "86", "87", "89", "90")  # A100, Ampere workstations, Jetson Orin, Ada, Hopper
DEFAULT_CUDA_ARCHS = "80-real,86-real,87-real,89-real,90"  # 90 = SASS + PTX
JETPACK_NVCC = Path("/usr/local/cuda/bin/nvcc")
EXPECTED_MARCH = {"x86_64": "x86-64-v3", "aarch64": "armv8.2-a"}


def _configure(build: Path, *flags: str, env: dict[str, str] | None = None) -> Any:
    cmd = ["cmake", "-S", str(ROOT), "-B", str(build), "-DSEGZERO_COPY_TO_PACKAGE=OFF", *flags]
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _env_without_cuda_on_path() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_HOME", "CUDA_PATH")}
    env["PATH"] = "/usr/bin:/bin"
    if shutil.which("nvcc", path=env["PATH"]) or shutil.which("cmake", path=env["PATH"]) is None:
        pytest.skip("cannot make a PATH with cmake but without nvcc here")
    return env


def test_cmake_finds_jetpack_nvcc_off_path(tmp_path: Path) -> None:
    """JetPack's nvcc lives in /usr/local/cuda/bin, which is not on PATH: CMake must find it
    (required here, so a miss fails) and build the default architectures 80..90 + PTX."""
    if not os.access(JETPACK_NVCC, os.X_OK):
        pytest.skip(f"{JETPACK_NVCC} not installed")
    env = _env_without_cuda_on_path()
    # like a Jetson: nvcc neither on PATH nor in the system folders (/usr/local/bin here)
    no_system = "-DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF"
    run = _configure(tmp_path / "b", "-DSEGZERO_REQUIRE_CUDA=ON", no_system, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    compiler = re.search(r"^CMAKE_CUDA_COMPILER:\w+=(.*)$", cache, re.M)
    assert compiler and Path(compiler.group(1)).resolve() == JETPACK_NVCC.resolve(), compiler
    assert f"CUDA kernels ON (architectures: {DEFAULT_CUDA_ARCHS})" in run.stdout, run.stdout


@pytest.mark.parametrize("require", [False, True], ids=["warn", "require"])
def test_cmake_without_cuda_is_loud(tmp_path: Path, require: bool) -> None:
    """No CUDA toolkit: a banner warning, or with SEGZERO_REQUIRE_CUDA=ON a configure error."""
    env = {**os.environ, "CUDACXX": str(tmp_path / "no-such-nvcc")}
    flag = f"-DSEGZERO_REQUIRE_CUDA={'ON' if require else 'OFF'}"
    run = _configure(tmp_path / "b", flag, env=env)
    assert "WITHOUT the CUDA kernels" in run.stderr, run.stdout + run.stderr
    assert "SEGZERO_REQUIRE_CUDA=ON" in run.stderr
    if require:
        assert run.returncode != 0 and "CMake Error" in run.stderr
    else:
        assert run.returncode == 0 and "CMake Warning" in run.stderr
        assert "CUDA kernels OFF" in run.stdout


def test_kernels_cpu_build_states_its_isa(native_cpu_lib: Path) -> None:
    """The CPU twin is built for the stated baseline, not the build machine: no AVX-512 (zmm)
    or AMX (tmm) instructions on x86-64."""
    info = native.build_info()
    print(f"build info: {info}")
    machine = platform.machine()
    if machine in EXPECTED_MARCH:
        assert info is not None and info.startswith(f"march={EXPECTED_MARCH[machine]} "), info
    if machine != "x86_64" or shutil.which("objdump") is None:
        return
    asm = subprocess.run(["objdump", "-d", str(native_cpu_lib)], capture_output=True, text=True)
    assert asm.returncode == 0, asm.stderr
    assert "%ymm" in asm.stdout  # the AVX2 baseline is used...
    wide = [ln for ln in asm.stdout.splitlines() if re.search(r"%zmm|%tmm|%k[1-7]\b", ln)]
    assert not wide, f"AVX-512/AMX instructions in {native_cpu_lib}: {wide[:3]}"


def test_wheel_carries_kernels_and_all_packages(tmp_path: Path) -> None:
    """``pip wheel .`` (scikit-build-core) builds csrc/ and ships it in segzero_edge/_lib/ with
    the four packages, train/configs, the entry points, and a py3 tag (one wheel per platform)."""
    pytest.importorskip("scikit_build_core", reason="needs scikit-build-core (the dev extra)")
    env = {**os.environ, "CMAKE_ARGS": "-DSEGZERO_CUDA=OFF"}
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
           "-w", str(tmp_path), str(ROOT)]  # fmt: skip
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    print(f"pip wheel (CPU only): {time.perf_counter() - t0:.1f} s")
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = tmp_path.glob("segzero_edge-*.whl")
    assert re.search(r"-py3-none-linux_\w+\.whl$", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
        zf.extractall(tmp_path / "unpacked")
    for member in (
        "segzero_edge/_lib/libsegzero_kernels.so",
        "segzero_edge/reasoner/llama_cpp.py",
        "segzero_export/engines.py",
        "segzero_train/configs/grpo_segzero.yaml",
        "segzero_bench/cli_bench.py",
    ):
        assert member in names, f"{member} not in {wheel.name}"
    for line in ("segzero-edge = segzero_edge.cli:main", "export = segzero_export.cli_export"):
        assert line in entry_points, entry_points
    lib = ctypes.CDLL(str(tmp_path / "unpacked/segzero_edge/_lib/libsegzero_kernels.so"))
    lib.sz_build_info.restype = ctypes.c_char_p
    assert lib.sz_build_info().decode().endswith("cuda=off")


def test_kernels_nvcc_compiles_cuda_sources(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: CUDA sources not compiled (CPU twin only)")
    obj = tmp_path / "kernels.o"
    cmd = [nvcc, "-c", str(ROOT / "csrc" / "kernels.cu"), "-I", str(ROOT / "csrc"), "-O3",
           "-std=c++17", "--fmad=false", "-Xcompiler=-fPIC", "-o", str(obj)]  # fmt: skip
    for arch in ARCHS:
        cmd += [f"--generate-code=arch=compute_{arch},code=sm_{arch}"]
    cmd += [f"--generate-code=arch=compute_{ARCHS[-1]},code=compute_{ARCHS[-1]}"]  # PTX
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
    rc = lib.sz_preprocess_cuda(None, 1, 1, 3, 0, None, 0, None, 1024, 0, None, 840, 0, None)
    assert rc == -3
    assert b"without CUDA" in lib.sz_last_error()
    assert native.cuda_available() is False


def test_install_doc_states_the_flags_the_builds_use() -> None:
    """docs/install.md's build table lists exactly the llama.cpp flags scripts/setup.sh passes
    and the CUDA architectures CMakeLists.txt defaults to."""
    readme = (ROOT / "docs" / "install.md").read_text()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    for arch in ("x86_64", "aarch64"):
        block = setup.split(f"    {arch}")[1].split(";;")[0]
        flags = " ".join(re.findall(r"-DGGML_\w+=\S+?(?=[\s\"])", block))
        assert flags and f'CMAKE_ARGS="{flags}"' in readme, f"{arch}: {flags}"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    archs = re.search(r"set\(CMAKE_CUDA_ARCHITECTURES ([^)]*)\)", cmake)
    assert archs and f'CMAKE_CUDA_ARCHITECTURES="{archs.group(1).replace(" ", ";")}"' in readme
    assert "-march=x86-64-v3" in readme and '"x86-64-v3"' in cmake
    assert "-march=armv8.2-a" in readme and '"armv8.2-a"' in cmake


def test_kernels_nv12_needs_its_own_uv_plane(native_cpu_lib: Path) -> None:
    """The C ABI takes the chroma plane as its own pointer and pitch, never after the luma."""
    lib = ctypes.CDLL(str(native_cpu_lib))
    lib.sz_last_error.restype = ctypes.c_char_p
    luma = (ctypes.c_uint8 * 64)()
    out = (ctypes.c_uint8 * (840 * 840 * 3))()
    rc = lib.sz_preprocess_cpu(luma, 4, 4, 4, 1, None, 0, None, 1024, 0, out, 840, 0, 1)
    assert rc == -1 and b"UV plane pointer is NULL" in lib.sz_last_error()
    chroma = (ctypes.c_uint8 * 64)()
    rc = lib.sz_preprocess_cpu(luma, 4, 4, 4, 1, chroma, 2, None, 1024, 0, out, 840, 0, 1)
    assert rc == -1 and b"UV pitch 2" in lib.sz_last_error()
    assert lib.sz_preprocess_cpu(luma, 4, 4, 4, 1, chroma, 4, None, 1024, 0, out, 840, 0, 1) == 0
