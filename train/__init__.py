"""segzero_train (this folder is ``train/``; it installs as the package ``segzero_train``):
Seg-Zero rewards, ground truth from masks, data loaders, synthetic data, evaluation metrics and
GRPO/SFT training (``segzero-edge eval``). Submodules import their heavy dependencies lazily.

The folders and their packages (``pyproject.toml`` ``wheel.force-include``): ``segzero_edge/``
-> ``segzero_edge``, ``export/`` -> ``segzero_export``, ``train/`` -> ``segzero_train``,
``benchmarks/`` -> ``segzero_bench``.
"""
