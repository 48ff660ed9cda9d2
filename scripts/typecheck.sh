#!/usr/bin/env bash
# mypy over the runtime's TensorRT / CUDA / segmenter code against tensorrt-stubs (TensorRT itself
# is not on PyPI). The stubs as published lack py.typed and have a few invalid lines:
# trt_stubs.py writes a fixed copy that mypy can read.
#   1. --strict over the modules that pass it (the platform package, the segmenter backends,
#      the backend protocols, the CUDA pixel path, the reasoner package, the pipeline and the
#      tracker); the goal is all of segzero_edge/.
#   2. the default checks over the rest of the TensorRT side (the CLI doctor, the engine
#      builder), which import the modules above.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" scripts/trt_stubs.py .cache/trt-stubs
STRICT=(
    segzero_edge/platform/*.py segzero_edge/segmenter/*.py segzero_edge/device.py
    segzero_edge/backends.py segzero_edge/cuda_pixels.py segzero_edge/engine_cache.py
    segzero_edge/native.py segzero_edge/layout.py segzero_edge/bundle.py
    segzero_edge/bundle_memory.py segzero_edge/pixels.py segzero_edge/camera.py
    segzero_edge/fileio.py segzero_edge/onnx_scan.py segzero_edge/overlay.py export/engines.py
    segzero_edge/reasoner/*.py
    segzero_edge/manifest.py segzero_edge/errors.py segzero_edge/prompt.py
    segzero_edge/placement.py segzero_edge/ros/processor.py
    segzero_edge/pipeline/*.py segzero_edge/lru.py segzero_edge/tracker.py segzero_edge/tracking/*.py
)
MYPYPATH=.cache/trt-stubs "$PY" -m mypy --strict --follow-imports=silent "${STRICT[@]}"
MYPYPATH=.cache/trt-stubs "$PY" -m mypy --follow-imports=silent \
    export/cli_build_engines.py segzero_edge/commands/doctor.py
