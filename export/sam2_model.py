"""Build a SAM2 model the way Meta's ``sam2/build_sam.py`` does, with clear errors.

``build_sam2_model`` is Meta's ``build_sam2`` (hydra config + ``_load_checkpoint``) on CPU; the
config names are those of Meta's published models (``sam2.build_sam.HF_MODEL_ID_TO_FILENAMES``)
and the project's micro SAM2 (``sam2.1_hiera_micro``: Meta's tiny config with the hydra overrides
of :mod:`segzero_export.micro_sam2`); ``infer_config`` reads the config from a checkpoint file
name.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import torch

from segzero_edge.layout import SAM2_SIZES, sam2_size


def config_files() -> dict[str, str]:
    """Config name (``sam2.1_hiera_t``) -> hydra config path inside the ``sam2`` package, for
    every model Meta publishes (``sam2.build_sam.HF_MODEL_ID_TO_FILENAMES``)."""
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    return {
        Path(cfg).stem: cfg.removesuffix(".yaml") + ".yaml"
        for cfg, _ckpt in HF_MODEL_ID_TO_FILENAMES.values()
    }


def config_file(config: str) -> str:
    """Hydra config path inside the ``sam2`` package for a name like ``sam2.1_hiera_t``.

    Raises ``ValueError`` naming the known configs for any other name.
    """
    name = config.removesuffix(".yaml").split("/")[-1]
    files = config_files()
    if name not in files:
        raise ValueError(f"unknown SAM2 config {config!r}; expected one of {', '.join(files)}")
    return files[name]


def build_sam2_model(
    config: str, checkpoint: str | os.PathLike[str] | None = None
) -> torch.nn.Module:
    """Meta's ``build_sam2`` on CPU in eval mode (image-predictor post-processing settings).

    ``config``: a SAM2 config name (``sam2.1_hiera_t``, or ``sam2.1_hiera_micro``: Meta's tiny
    config with :data:`segzero_export.micro_sam2.MICRO_SAM2_OVERRIDES`); ``checkpoint``: a Meta
    checkpoint (``{"model": state_dict}``) loaded strictly by Meta's ``_load_checkpoint``, or
    None for random weights. Raises ``FileNotFoundError`` for a missing file and ``ValueError``
    for an unknown config, an unreadable file, a file that is not a Meta SAM2 checkpoint or one
    whose tensors do not match the config.
    """
    from sam2.build_sam import build_sam2

    from .micro_sam2 import MICRO_SAM2_BASE, MICRO_SAM2_CONFIG, MICRO_SAM2_OVERRIDES

    micro = config.removesuffix(".yaml").split("/")[-1] == MICRO_SAM2_CONFIG
    overrides = list(MICRO_SAM2_OVERRIDES) if micro else []
    cfg = config_file(MICRO_SAM2_BASE if micro else config)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {checkpoint}")
    ckpt = None if checkpoint is None else str(checkpoint)
    try:
        return build_sam2(
            cfg, ckpt_path=ckpt, device="cpu", mode="eval", hydra_overrides_extra=overrides
        )
    except (KeyError, TypeError, IndexError) as e:  # torch.load(...)["model"] failed
        raise ValueError(
            f"{checkpoint} is not a Meta SAM2 checkpoint (expected {{'model': state_dict}}): {e!r}"
        ) from e
    except (pickle.UnpicklingError, EOFError, struct.error) as e:  # not a torch.save file
        raise ValueError(f"{checkpoint} is not a readable PyTorch checkpoint: {e!r}") from e
    except RuntimeError as e:  # load_state_dict (strict): missing, unexpected or mis-shaped keys
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        if not lines:  # not load_state_dict's report: torch.load itself failed
            raise ValueError(f"{checkpoint} is not a readable PyTorch checkpoint: {e!r}") from e
        detail = "; ".join(lines[:2]) + (f"; ... ({len(lines)} in all)" if len(lines) > 2 else "")
        raise ValueError(f"{checkpoint} does not match the SAM2 config {config!r}: {detail}") from e


def infer_config(checkpoint: str | os.PathLike[str]) -> str:
    """Config name (``sam2.1_hiera_b+``) from a checkpoint file name like
    ``sam2.1_hiera_base_plus.pt`` (``sam2.1_hiera_micro`` for a name with ``micro`` in it, such
    as ``sam2_micro.pt``); ValueError when the name gives no size."""
    from .micro_sam2 import MICRO_SAM2_CONFIG

    name = Path(checkpoint).name.lower()
    if "micro" in name:
        return MICRO_SAM2_CONFIG
    family = "sam2.1" if "sam2.1" in name or "sam2_1" in name else "sam2"
    try:
        size = sam2_size(name)
    except ValueError:
        raise ValueError(
            f"cannot infer the SAM2 config from {name!r}; pass config= "
            "(e.g. 'sam2.1_hiera_t', 'sam2_hiera_b+')"
        ) from None
    return f"{family}_hiera_{SAM2_SIZES[size]}"
