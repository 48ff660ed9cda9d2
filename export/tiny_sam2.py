"""SAM2 models from Meta's own configs: a seeded random checkpoint, and loading one.

No weights can be downloaded here, so tests and smoke exports use a Meta-format checkpoint
(``{"model": state_dict}``) of the real architecture with random weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from segzero_edge.fileio import atomic_path

CONFIG_NAMES = tuple(
    f"{family}_hiera_{size}" for family in ("sam2", "sam2.1") for size in ("t", "s", "b+", "l")
)


def config_file(config: str) -> str:
    """Hydra config path inside the ``sam2`` package for a name like ``sam2.1_hiera_t``."""
    name = config.removesuffix(".yaml").split("/")[-1]
    if name not in CONFIG_NAMES:
        raise ValueError(f"unknown SAM2 config {config!r}; expected one of {', '.join(CONFIG_NAMES)}")
    family = re.match(r"(sam2(?:\.1)?)_", name)
    assert family is not None
    return f"configs/{family.group(1)}/{name}.yaml"


def build_sam2_model(config: str, checkpoint: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Meta's ``build_sam2`` on CPU in eval mode (image-predictor post-processing settings)."""
    from sam2.build_sam import build_sam2

    ckpt = None if checkpoint is None else str(checkpoint)
    return build_sam2(config_file(config), ckpt_path=ckpt, device="cpu", mode="eval")


def build_sam2_checkpoint(
    out_path: str | os.PathLike[str], config: str = "sam2.1_hiera_t", seed: int = 0
) -> Path:
    """Write a randomly initialised (seeded) SAM2 checkpoint of ``config`` to ``out_path``."""
    out = Path(out_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2_model(config)
    with atomic_path(out) as tmp:
        torch.save({"model": model.state_dict()}, tmp)
    return out
