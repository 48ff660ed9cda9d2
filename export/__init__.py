"""segzero_export (this folder is ``export/``; it installs as the package ``segzero_export``):
the exporter, Qwen2.5-VL / Qwen3-VL -> GGUF (+ INT4), SAM2 -> ONNX, the bundle writer and the
TensorRT engine builder (``segzero-edge export``, ``segzero-edge build-engines``).

The folders and their packages (``pyproject.toml`` ``wheel.force-include``): ``segzero_edge/``
-> ``segzero_edge``, ``export/`` -> ``segzero_export``, ``train/`` -> ``segzero_train``,
``benchmarks/`` -> ``segzero_bench``. Needs the [export] extra (torch, transformers, SAM2).
"""
