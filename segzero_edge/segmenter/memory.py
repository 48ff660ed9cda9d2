"""SAM2's video memory on the runtime side: its settings, the backend interface, opening one.

A memory backend runs the two graphs of ``segzero_export.sam2_memory_onnx``: memory attention
(the frame's features conditioned on past memories and object pointers) and the memory encoder
(a frame's memory from its features and chosen mask). The tracker
(:mod:`segzero_edge.tracker`) chooses the memories and pointers, as
``SAM2Base._prepare_memory_conditioned_features`` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..backends import ImageEmbedding
from ..errors import BundleError
from ..layout import MANIFEST, TRACKING_KEY

REEXPORT = (
    "this bundle has no SAM2 video-memory graphs (exported before tracking existed); "
    "re-export it with `segzero-edge export` to use track() (segment() keeps working)"
)


@dataclass(frozen=True)
class TrackingConfig:
    """SAM2's memory settings (``SAM2Base`` attributes, names as there; SAM2.1 defaults).

    ``binarize_mask_from_pts_for_mem_enc`` and ``fill_hole_area`` are what
    ``build_sam2_video_predictor`` sets.
    """

    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    memory_temporal_stride_for_eval: int = 1
    use_obj_ptrs_in_encoder: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    use_multimask_token_for_obj_ptr: bool = True
    pred_obj_scores: bool = True
    mem_dim: int = 64
    hidden_dim: int = 256
    binarize_mask_from_pts_for_mem_enc: bool = True
    fill_hole_area: int = 8

    @classmethod
    def from_json(cls, data: Any, source: str = "tracking settings") -> TrackingConfig:
        """From the manifest / ONNX metadata dict; ``ValueError`` naming ``source`` if bad."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            want = bool if f.type == "bool" else int
            ok = isinstance(value, bool) if want is bool else type(value) is int
            if not ok:
                raise ValueError(f"{source}: {f.name} must be {want.__name__}, got {value!r}")
            kwargs[f.name] = value
        cfg = cls(**kwargs)
        if cfg.num_maskmem < 1 or cfg.max_obj_ptrs_in_encoder < 2:
            raise ValueError(
                f"{source}: num_maskmem must be >= 1 and max_obj_ptrs_in_encoder >= 2, got "
                f"{cfg.num_maskmem} and {cfg.max_obj_ptrs_in_encoder}"
            )
        if cfg.memory_temporal_stride_for_eval < 1:
            raise ValueError(f"{source}: memory_temporal_stride_for_eval must be >= 1")
        return cfg

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@runtime_checkable
class SAM2Memory(Protocol):
    """SAM2 memory attention + memory encoder (one object per call, batch 1).

    ``attend``: ``memory [N, 64, 64, 64]`` float32 memory features, ``memory_tpos [N]``
    float32 (SAM2's ``t_pos``: 0 conditioning frame, ``num_maskmem - k`` for ``k`` frames
    back), ``obj_ptrs [M, 256]`` float32, ``obj_ptr_tpos [M]`` float32 (signed frame
    distance / ``t_diff_max``) -> the decoder's ``image_embed`` for this frame (a backend
    array, ``[1, 256, 64, 64]``).
    ``encode_memory``: ``mask_logits [1, 1, 256, 256]`` (chosen low-res logits),
    ``object_score_logits [1, 1]``, ``is_mask_from_pts`` -> ``maskmem_features
    [1, 64, 64, 64]`` float32 (numpy).
    """

    name: str
    config: TrackingConfig

    def attend(
        self,
        embedding: ImageEmbedding,
        memory: np.ndarray,
        memory_tpos: np.ndarray,
        obj_ptrs: np.ndarray,
        obj_ptr_tpos: np.ndarray,
    ) -> Any: ...

    def encode_memory(
        self,
        embedding: ImageEmbedding,
        mask_logits: np.ndarray,
        object_score_logits: np.ndarray,
        is_mask_from_pts: bool,
    ) -> np.ndarray: ...

    def close(self) -> None: ...


def manifest_tracking(bundle_dir: Path) -> TrackingConfig | None:
    """``segmenter.tracking`` of the bundle's manifest, or None when it has none."""
    path = bundle_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read {path}: {e}") from None
    data = (manifest.get("segmenter") or {}).get(TRACKING_KEY)
    if data is None:
        return None
    try:
        return TrackingConfig.from_json(data, f"{path} segmenter.{TRACKING_KEY}")
    except ValueError as e:
        raise BundleError(str(e)) from None


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even as ``torch.Tensor.to``.

    numpy has no bfloat16 type; SAM2VideoPredictor stores memory features in bfloat16.
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


__all__ = [
    "REEXPORT",
    "SAM2Memory",
    "TrackingConfig",
    "from_bfloat16",
    "manifest_tracking",
    "to_bfloat16",
]
