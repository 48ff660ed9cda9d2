#!/usr/bin/env bash
# mypy --strict over the whole runtime package (segzero_edge/) and the engine builder
# (export/engines.py, export/cli_build_engines.py), against tensorrt-stubs for the TensorRT / CUDA
# code (TensorRT itself is not on PyPI). The stubs as published lack py.typed and have a few
# invalid lines: trt_stubs.py writes a fixed copy that mypy can read.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" scripts/trt_stubs.py .cache/trt-stubs
STRICT=(segzero_edge export/engines.py export/cli_build_engines.py)
MYPYPATH=.cache/trt-stubs "$PY" -m mypy --strict --follow-imports=silent "${STRICT[@]}"
