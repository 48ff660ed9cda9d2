#!/usr/bin/env bash
# Install segzero-edge into ./.venv with the pinned stack, in the order that works offline
# of any model hub: torch first (so nothing pulls another build), then Meta's sam2 without
# build isolation, then the project with its extras, then the native kernels.
#
#   scripts/setup.sh            # runtime + export (enough for the demo)
#   scripts/setup.sh dev        # + train + dev tools (tests, ruff, mypy)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-user}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q -U pip wheel setuptools
echo "== torch (CPU use; pinned)"
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
echo "== Meta sam2 (no CUDA extension, no build isolation)"
"$VPY" -m pip show -q sam2 >/dev/null 2>&1 ||
    SAM2_BUILD_CUDA=0 "$VPY" -m pip install -q --no-build-isolation sam2==1.1.0
extras="export"
[ "$mode" = dev ] && extras="export,train,dev"
echo "== segzero-edge[$extras] (llama-cpp-python builds from source: ~5-10 min on 2 cores)"
"$VPY" -m pip install -q -e ".[$extras]"
if [ "$mode" = dev ]; then
    # tensorrt-stubs declares a dependency on tensorrt itself, which is not on PyPI.
    "$VPY" -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1
fi
echo "== native kernels (CPU twin; CUDA too when nvcc is present)"
if command -v cmake >/dev/null 2>&1 && [ -f CMakeLists.txt ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)"
    cmake --install build >/dev/null
else
    echo "cmake not found: the runtime will use its numpy fallback"
fi
echo "== done: activate with 'source .venv/bin/activate'"
