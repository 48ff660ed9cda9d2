"""segzero_bench (this folder is ``benchmarks/``; it installs as the package ``segzero_bench``):
the benchmarks (``segzero-edge bench``), this runtime vs the Seg-Zero reference.

Needs the [export] extra (torch, transformers, sam2) for the reference side and matplotlib for
the plots. The folders and their packages (``pyproject.toml`` ``wheel.force-include``):
``segzero_edge/`` -> ``segzero_edge``, ``export/`` -> ``segzero_export``, ``train/`` ->
``segzero_train``, ``benchmarks/`` -> ``segzero_bench``.
"""
