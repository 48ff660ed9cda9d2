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
from ..layout import (
    SAM2_FEAT_SIZE,
    SAM2_MASK_INPUT_SHAPE,
    SAM2_MEMORY_ATTENTION_FILE,
    SAM2_MEMORY_ENCODER_FILE,
    SAM2_MEMORY_ENCODER_OUTPUTS,
    TRACKING_KEY,
    TRACKING_METADATA_KEY,
)
from ..manifest import Manifest
from ..onnx_scan import OnnxSummary

TPOS_INITIALIZER = "maskmem_tpos_enc"
"""The memory attention graph's ``[num_maskmem, mem_dim]`` temporal encoding (SAM2's
``maskmem_tpos_enc``): one row per memory slot."""

REEXPORT = (
    "this bundle has no SAM2 video-memory graphs (exported before tracking existed); "
    "re-export it with `segzero-edge export` to use track() (segment() keeps working)"
)


TRACKING_LIMITS: dict[str, tuple[int, int]] = {
    "num_maskmem": (1, 64),
    "max_obj_ptrs_in_encoder": (2, 256),
    "memory_temporal_stride_for_eval": (1, 1000),
    "multimask_min_pt_num": (0, 1000),
    "multimask_max_pt_num": (0, 1000),
    "mem_dim": (1, 4096),
    "hidden_dim": (1, 4096),
    "fill_hole_area": (0, 1 << 24),
}
"""Bounds of the integer settings (every SAM2 config has ``num_maskmem`` 7, 16 object
pointers, stride 1, ``mem_dim`` 64, ``hidden_dim`` 256): the tracker's work per frame grows
with ``num_maskmem`` and ``max_obj_ptrs_in_encoder``, so a manifest cannot make it hang."""


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
        for name, (low, high) in TRACKING_LIMITS.items():
            value = getattr(cfg, name)
            if not low <= value <= high:
                raise ValueError(f"{source}: {name} must be >= {low} and <= {high}, got {value}")
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


def tracking_of(manifest: Manifest, mpath: Path) -> TrackingConfig | None:
    """``segmenter.tracking`` of a manifest (read from ``mpath`` by
    :func:`~segzero_edge.manifest.read_manifest`), or None when it has none. Raises
    :class:`BundleError` naming ``mpath`` and the setting when it is malformed or out of
    :data:`TRACKING_LIMITS`."""
    data = manifest.segmenter.tracking
    if data is None:
        return None
    try:
        return TrackingConfig.from_json(dict(data), f"{mpath} segmenter.{TRACKING_KEY}")
    except ValueError as e:
        raise BundleError(str(e)) from None


def check_tracking(manifest: Manifest, graphs: dict[str, OnnxSummary], mpath: Path) -> None:
    """The manifest's tracking settings against the memory graphs it lists (``graphs``: file
    name -> :func:`~segzero_edge.onnx_scan.scan_onnx` of each listed ONNX file).

    The settings must be within :data:`TRACKING_LIMITS`, equal the settings stored in the
    memory attention graph (``TRACKING_METADATA_KEY``) and fit the graphs' shapes: the
    memory slots of its temporal encoding (``maskmem_tpos_enc``, ``[num_maskmem, mem_dim]``),
    the channels of ``memory`` (``mem_dim``) and ``obj_ptrs`` (``hidden_dim``), and of the
    memory encoder's ``maskmem_features`` (``mem_dim``). Raises :class:`BundleError` naming
    ``mpath`` and the setting.
    """
    cfg = tracking_of(manifest, mpath)
    attention = graphs.get(SAM2_MEMORY_ATTENTION_FILE)
    encoder = graphs.get(SAM2_MEMORY_ENCODER_FILE)
    if attention is None:
        return
    where = f"{mpath}: segmenter.{TRACKING_KEY}"
    meta = attention.metadata.get(TRACKING_METADATA_KEY)
    stored = None
    if meta is not None:
        source = f"{SAM2_MEMORY_ATTENTION_FILE} metadata {TRACKING_METADATA_KEY}"
        try:
            stored = TrackingConfig.from_json(json.loads(meta), source)
        except ValueError as e:
            raise BundleError(f"{mpath}: {e}") from None
    if cfg is not None and stored is not None and cfg != stored:
        diff = [
            f"{k} {v!r} (graph: {stored.to_json()[k]!r})"
            for k, v in cfg.to_json().items()
            if stored.to_json()[k] != v
        ]
        raise BundleError(
            f"{where} disagrees with what {SAM2_MEMORY_ATTENTION_FILE} was exported with: "
            f"{', '.join(diff)}; re-export the bundle"
        )
    used = cfg or stored or TrackingConfig()
    if cfg is None:
        where = f"{mpath}: {SAM2_MEMORY_ATTENTION_FILE} metadata {TRACKING_METADATA_KEY}"
    tpos = attention.initializers.get(TPOS_INITIALIZER)
    enc_out = SAM2_MEMORY_ENCODER_OUTPUTS[0]
    checks = [  # (graph, what, shape, axis, setting)
        (SAM2_MEMORY_ATTENTION_FILE, f"{TPOS_INITIALIZER} rows (memory slots)", tpos, 0,
         "num_maskmem"),
        (SAM2_MEMORY_ATTENTION_FILE, f"{TPOS_INITIALIZER} columns", tpos, 1, "mem_dim"),
        (SAM2_MEMORY_ATTENTION_FILE, "input memory channels", attention.inputs.get("memory"),
         1, "mem_dim"),
        (SAM2_MEMORY_ATTENTION_FILE, "input obj_ptrs channels",
         attention.inputs.get("obj_ptrs"), 1, "hidden_dim"),
        (SAM2_MEMORY_ENCODER_FILE, f"output {enc_out} channels",
         encoder.outputs.get(enc_out) if encoder else None, 1, "mem_dim"),
    ]  # fmt: skip
    for graph, what, shape, axis, name in checks:
        if shape is None or len(shape) <= axis or shape[axis] is None:
            continue
        if shape[axis] != getattr(used, name):
            raise BundleError(
                f"{where}.{name} is {getattr(used, name)} but {graph} has {what} "
                f"{shape[axis]}; re-export the bundle"
            )


def attention_feeds(
    memory: np.ndarray,
    memory_tpos: np.ndarray,
    obj_ptrs: np.ndarray,
    obj_ptr_tpos: np.ndarray,
    config: TrackingConfig,
) -> dict[str, np.ndarray]:
    """The memory attention feeds as contiguous float32, or ``ValueError`` naming the input."""
    side, d, c = SAM2_FEAT_SIZE, config.mem_dim, config.hidden_dim
    feeds = {
        "memory": np.ascontiguousarray(memory, dtype=np.float32),
        "memory_tpos": np.ascontiguousarray(memory_tpos, dtype=np.float32),
        "obj_ptrs": np.ascontiguousarray(obj_ptrs, dtype=np.float32),
        "obj_ptr_tpos": np.ascontiguousarray(obj_ptr_tpos, dtype=np.float32),
    }
    n, m = feeds["memory"].shape[0], feeds["obj_ptrs"].shape[0]
    if feeds["memory"].shape[1:] != (d, side, side) or n < 1:
        raise ValueError(f"memory must be [N >= 1, {d}, {side}, {side}], got {memory.shape}")
    if feeds["memory_tpos"].shape != (n,):
        raise ValueError(f"memory_tpos must be [{n}], got {memory_tpos.shape}")
    if feeds["obj_ptrs"].shape[1:] != (c,) or m < 1:
        raise ValueError(f"obj_ptrs must be [M >= 1, {c}], got {obj_ptrs.shape}")
    if feeds["obj_ptr_tpos"].shape != (m,):
        raise ValueError(f"obj_ptr_tpos must be [{m}], got {obj_ptr_tpos.shape}")
    return feeds


def encoder_feeds(
    mask_logits: np.ndarray, object_score_logits: np.ndarray, is_mask_from_pts: bool
) -> dict[str, np.ndarray]:
    """The memory encoder's feeds besides ``image_embed``: ``mask_logits [1, 1, 256, 256]``,
    ``object_score_logits [1, 1]``, ``is_mask_from_pts [1]``, contiguous float32;
    ``ValueError`` for a mask of another size."""
    mask = np.ascontiguousarray(mask_logits, dtype=np.float32)
    if mask.size != int(np.prod(SAM2_MASK_INPUT_SHAPE)):
        raise ValueError(
            f"mask_logits must be {SAM2_MASK_INPUT_SHAPE}, got {np.shape(mask_logits)}"
        )
    score = np.ascontiguousarray(object_score_logits, dtype=np.float32).reshape(1, 1)
    return {
        "mask_logits": mask.reshape(SAM2_MASK_INPUT_SHAPE),
        "object_score_logits": score,
        "is_mask_from_pts": np.array([1.0 if is_mask_from_pts else 0.0], dtype=np.float32),
    }


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even as ``torch.Tensor.to``.

    numpy has no bfloat16 type; SAM2VideoPredictor stores memory features in bfloat16.
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out: np.ndarray = ((bits + rounding) >> 16).astype(np.uint16)
    return out


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


__all__ = [
    "REEXPORT",
    "TPOS_INITIALIZER",
    "TRACKING_LIMITS",
    "SAM2Memory",
    "TrackingConfig",
    "attention_feeds",
    "check_tracking",
    "encoder_feeds",
    "from_bfloat16",
    "to_bfloat16",
    "tracking_of",
]
