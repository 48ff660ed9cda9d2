"""The micro SAM2: Meta's SAM2.1 architecture with a small Hiera trunk, for the scene task.

Meta's ``sam2.1_hiera_t`` config (``sam2/configs/sam2.1/sam2.1_hiera_t.yaml``) with the hydra
overrides :data:`MICRO_SAM2_OVERRIDES`: a Hiera of embedding width 32 and 1 + 1 + 2 + 1 blocks
(Meta's tiny: 96 and 1 + 2 + 7 + 2), one memory-attention layer (tiny: 4). Everything the
runtime, the ONNX export and the tracking graphs see stays as in Meta's models: the 1024 x 1024
input, the 256-channel neck and image embedding (64 x 64), the high-resolution features
(32 x 256 x 256 and 64 x 128 x 128, from the neck's 1 x 1 convolutions), the prompt encoder and
the mask decoder (4 mask tokens, IoU head), the 64-channel memory.

:func:`build_micro_sam2` builds it with Meta's ``build_sam2`` (random weights, or a checkpoint in
Meta's ``{"model": state_dict}`` layout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MICRO_SAM2_BASE = "sam2.1_hiera_t"
"""The Meta config the micro SAM2 starts from."""

MICRO_SAM2_CONFIG = "sam2.1_hiera_micro"
"""The micro SAM2's config name: :func:`segzero_export.sam2_model.build_sam2_model` and
``segzero-edge export --sam2-config`` accept it, and
:func:`segzero_export.sam2_model.infer_config` reads it from a checkpoint name with ``micro``
in it (``sam2_micro.pt``, what ``segzero_train.micro`` writes)."""

MICRO_SAM2_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
)
"""Hydra overrides of :data:`MICRO_SAM2_BASE` (Hiera channels double per stage: 32 .. 256)."""


def build_micro_sam2(checkpoint: str | os.PathLike[str] | None = None, mode: str = "eval") -> Any:
    """Meta's ``build_sam2`` of the micro config on CPU; ``mode="train"`` leaves it trainable.

    Raises ``FileNotFoundError`` for a missing checkpoint.
    """
    from sam2.build_sam import build_sam2

    from .sam2_model import config_file

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {checkpoint}")
    return build_sam2(
        config_file(MICRO_SAM2_BASE),
        ckpt_path=None if checkpoint is None else str(checkpoint),
        device="cpu",
        mode=mode,
        hydra_overrides_extra=list(MICRO_SAM2_OVERRIDES),
    )


__all__ = ["MICRO_SAM2_BASE", "MICRO_SAM2_CONFIG", "MICRO_SAM2_OVERRIDES", "build_micro_sam2"]
