#!/usr/bin/env bash
# mypy over the TensorRT / CUDA code against tensorrt-stubs (TensorRT itself is not on PyPI).
# The stubs as published lack py.typed and have a few invalid lines: trt_stubs.py writes a
# fixed copy that mypy can read.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" scripts/trt_stubs.py .cache/trt-stubs
MYPYPATH=.cache/trt-stubs "$PY" -m mypy --follow-imports=silent \
    segzero_edge/device.py segzero_edge/engine_cache.py segzero_edge/segmenter/tensorrt.py \
    segzero_edge/cuda_memory.py segzero_edge/segmenter/auto.py segzero_edge/segmenter/onnxruntime.py \
    segzero_edge/cuda_pixels.py segzero_edge/native.py segzero_edge/pipeline.py \
    segzero_edge/segmenter/memory_tensorrt.py segzero_edge/segmenter/memory.py \
    export/engines.py export/cli_build_engines.py segzero_edge/commands/doctor.py
