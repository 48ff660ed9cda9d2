#!/usr/bin/env bash
# Install segzero-edge into ./.venv with the pinned stack, in the order that works offline
# of any model hub: torch first (so nothing pulls another build), then Meta's sam2 without
# build isolation, then llama-cpp-python built with explicit CPU flags, then the project
# (whose wheel builds and carries the native kernels, csrc/, through scikit-build-core).
#
#   scripts/setup.sh            # runtime + export (enough for the demo)
#   scripts/setup.sh dev        # + train + dev tools (tests, ruff, mypy)
#   scripts/setup.sh runtime    # the runtime alone (numpy, pillow, llama.cpp, onnxruntime)
#
# Environment:
#   PYTHON=python3.10           interpreter for the venv (default python3)
#   VENV=.venv310               venv folder (default .venv)
#   LLAMA_CMAKE_ARGS="..."      replaces the llama.cpp CPU flags below (e.g. -DGGML_NATIVE=ON
#                               for a build that only ever runs on this machine)
#   LLAMA_CPU_VARIANTS=1        x86-64: build every CPU variant of llama.cpp's CPU backend
#                               (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS, ~14 modules, several
#                               times the build time); the runtime loads the best one this CPU
#                               runs (AVX-512/VNNI kernels where present, AMX ones only when
#                               SEGZERO_LLAMA_EXTRA_BUFTS=1), so one wheel is fast everywhere
#   SEGZERO_CMAKE_ARGS="..."    CMake flags for csrc/, space-separated (e.g. -DSEGZERO_CUDA=OFF,
#                               -DSEGZERO_REQUIRE_CUDA=ON, -DCMAKE_CUDA_ARCHITECTURES=87);
#                               the defaults are in CMakeLists.txt: -march=x86-64-v3 (x86-64)
#                               or armv8.2-a (aarch64), CUDA 80/86/87/89/90 + PTX when nvcc is
#                               found (PATH or /usr/local/cuda/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-user}"
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$(cd "$VENV" && pwd)/bin/python"
"$VPY" -m pip install -q -U pip wheel setuptools

# --- llama-cpp-python: built from source with explicit CPU flags ---------------------------
# GGML_NATIVE=ON (llama.cpp's default) compiles for the *build* machine's ISA: on a CPU with
# AMX that enables ggml's AMX kernels, which crash (llama.cpp issue 20824), and the wheel
# raises SIGILL on an older CPU. So x86-64 gets the x86-64-v3 baseline (AVX2, FMA, F16C, BMI2:
# every x86 CPU since 2013), no AVX-512, no AMX; aarch64 gets armv8.2-a+dotprod+fp16 (Jetson
# Orin's Cortex-A78AE, also Graviton2+ and Raspberry Pi 5).
LLAMA_VERSION=0.3.36
case "$(uname -m)" in
    x86_64)
        default_llama_args="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON"
        default_llama_args+=" -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF"
        default_llama_args+=" -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
        default_llama_args+=" -DGGML_AMX_BF16=OFF -DGGML_OPENMP=ON"
        ;;
    aarch64 | arm64)
        default_llama_args="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16"
        default_llama_args+=" -DGGML_OPENMP=ON"
        ;;
    *) default_llama_args="-DGGML_NATIVE=OFF" ;;
esac
if [ "${LLAMA_CPU_VARIANTS:-0}" = 1 ] && [ "$(uname -m)" = x86_64 ]; then
    # every CPU variant as its own module; the runtime loads the best one this CPU runs
    default_llama_args="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
    default_llama_args+=" -DGGML_OPENMP=ON"
fi
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:-$default_llama_args}"
if [ "$mode" != runtime ] || ! "$VPY" -m pip show -q llama-cpp-python >/dev/null 2>&1; then
    # One wheel per flag set (pip's own cache ignores CMAKE_ARGS, so it is bypassed). The
    # wheel is pure-Python-tagged (py3-none): the 3.10 and 3.11 venvs share it.
    key=$(printf '%s %s %s' "$LLAMA_VERSION" "$(uname -m)" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
    wdir=".cache/wheels/llama-cpp-python-$key"
    if ! ls "$wdir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "== llama-cpp-python $LLAMA_VERSION from source (~5-10 min on 2 cores)"
        echo "   CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
        mkdir -p "$wdir"
        CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VPY" -m pip wheel -q --no-deps --no-cache-dir \
            --no-binary llama-cpp-python -w "$wdir" "llama-cpp-python==$LLAMA_VERSION"
        printf '%s\n' "$LLAMA_CMAKE_ARGS" >"$wdir/CMAKE_ARGS"
    fi
    "$VPY" -m pip install -q --force-reinstall --no-deps "$wdir"/llama_cpp_python-*.whl
    "$VPY" -m pip install -q "llama-cpp-python==$LLAMA_VERSION"  # its pure-Python deps
fi

# scikit-build-core reads CMAKE_ARGS (space-separated) for the csrc/ build.
export CMAKE_ARGS="${SEGZERO_CMAKE_ARGS:-}"

native_report() {
    # The CMake warning about a build without CUDA is hidden by pip -q: say it here again.
    # (Run from / so that the installed package is imported, not this source tree.)
    (cd / && "$VPY" -) <<'PY'
from segzero_edge import native
ok, why = native.available()
print(f"== native kernels: {why}")
if ok and not native.built_with_cuda():
    import os, shutil
    if shutil.which("nvidia-smi") or os.path.exists("/etc/nv_tegra_release"):
        print("!! WARNING: this machine has an NVIDIA GPU but the kernels were built WITHOUT CUDA"
              " (nvcc not found); set SEGZERO_CMAKE_ARGS=-DSEGZERO_REQUIRE_CUDA=ON to fail instead")
PY
}

if [ "$mode" = runtime ]; then
    echo "== segzero-edge[runtime] (builds csrc/ for the CPU twin, CUDA when nvcc is found)"
    "$VPY" -m pip install -q ".[runtime]"
    native_report
    echo "== done: $VENV (runtime only)"
    exit 0
fi

echo "== torch (CPU use; pinned)"
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
echo "== Meta sam2 (no CUDA extension, no build isolation)"
"$VPY" -m pip show -q sam2 >/dev/null 2>&1 ||
    SAM2_BUILD_CUDA=0 "$VPY" -m pip install -q --no-build-isolation sam2==1.1.0
extras="export"
[ "$mode" = dev ] && extras="export,train,bench,dev"
echo "== segzero-edge[$extras] (editable; builds csrc/ into segzero_edge/_lib)"
"$VPY" -m pip install -q -e ".[$extras]"
native_report
if [ "$mode" = dev ]; then
    # tensorrt-stubs declares a dependency on tensorrt itself, which is not on PyPI.
    "$VPY" -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1
fi
echo "== done: activate with 'source $VENV/bin/activate'"
