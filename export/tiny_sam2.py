"""A seeded, randomly initialised SAM2 checkpoint in Meta's format, for tests and the demo.

No weights can be downloaded here, so tests and smoke exports use a Meta-format checkpoint
(``{"model": state_dict}``) of the real architecture (Meta's configs, built by
:func:`segzero_export.sam2_model.build_sam2_model`) with random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from segzero_edge.fileio import atomic_path

from .sam2_model import build_sam2_model


def build_sam2_checkpoint(
    out_path: str | os.PathLike[str], config: str = "sam2.1_hiera_t", seed: int = 0
) -> Path:
    """Write a randomly initialised (seeded) SAM2 checkpoint of ``config`` to ``out_path``.

    The file has Meta's layout (``{"model": state_dict}``, float32), so
    :func:`build_sam2_model` and Meta's ``build_sam2`` load it like a released checkpoint.
    """
    out = Path(out_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2_model(config)
    with atomic_path(out) as tmp:
        torch.save({"model": model.state_dict()}, tmp)
    return out
