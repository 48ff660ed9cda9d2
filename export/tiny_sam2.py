"""SAM2 models from Meta's own configs: a seeded random checkpoint, and loading one.

No weights can be downloaded here, so tests and smoke exports use a Meta-format checkpoint
(``{"model": state_dict}``) of the real architecture with random weights.
"""

from __future__ import annotations

import os
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
        raise ValueError(
            f"unknown SAM2 config {config!r}; expected one of {', '.join(CONFIG_NAMES)}"
        )
    family = name.split("_hiera_")[0]
    return f"configs/{family}/{name}.yaml"


def load_state_dict(checkpoint: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a Meta SAM2 checkpoint, with clear errors."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {e!r}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{path} is not a Meta SAM2 checkpoint (expected {{'model': state_dict}})")
    return ckpt["model"]


def build_sam2_model(
    config: str, checkpoint: str | os.PathLike[str] | None = None
) -> torch.nn.Module:
    """Meta's ``build_sam2`` on CPU in eval mode (image-predictor post-processing settings)."""
    from sam2.build_sam import build_sam2

    model = build_sam2(config_file(config), ckpt_path=None, device="cpu", mode="eval")
    if checkpoint is None:
        return model
    state = load_state_dict(checkpoint)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shape mismatches
        lines = [ln.strip() for ln in str(e).splitlines()[1:]]
        detail = "; ".join(lines[:2]) + (f"; ... ({len(lines)} in all)" if len(lines) > 2 else "")
        raise ValueError(f"{checkpoint} does not match the SAM2 config {config!r}: {detail}") from e
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not match the SAM2 config {config!r}: "
            f"{len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    return model


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
