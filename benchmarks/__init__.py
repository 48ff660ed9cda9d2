"""segzero-edge benchmarks (``segzero-edge bench``): this runtime vs the Seg-Zero reference.

Installed as the ``segzero_bench`` package; needs the [export] extra (torch, transformers,
sam2) for the reference side and matplotlib for the plots.
"""
