"""The JSON form of a result: its fields by their Python names, masks as COCO RLE.

Masks are run-length encoded as the COCO API does (``pycocotools.mask.encode`` of a
Fortran-ordered H x W uint8 array: column-major runs, ``{"size": [H, W], "counts": str}``),
so any COCO tool decodes them (``pycocotools.mask.decode``). pycocotools is imported only
here, when a result is written or read, so ``import segzero_edge`` stays light. The layout is
versioned by ``schema_version`` (:data:`SCHEMA_VERSION`); see
``docs/results.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCHEMA_VERSION = 1
"""Version of the JSON form of a result (``Segmentation.to_json``)."""

_FLAGS = ("overlap", "cuda_pixels", "sam_cache_hit", "reasoner_cache_hit")


def _mask_utils() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise ImportError(
            "results as JSON need pycocotools (COCO RLE masks): pip install "
            "'segzero-edge[runtime]' (or pycocotools==2.0.11)"
        ) from None
    return mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """H x W bool -> COCO RLE ``{"size": [H, W], "counts": str}``."""
    if mask.ndim != 2:
        raise ValueError(f"a mask is H x W, got shape {mask.shape}")
    rle = _mask_utils().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` as str or bytes) -> H x W bool."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    raw = {"size": [int(v) for v in rle["size"]], "counts": counts}
    return np.asarray(_mask_utils().decode(raw), dtype=bool)


def to_json(result: Any, *, masks: bool = True) -> dict[str, Any]:
    """The fields every result has (``Segmentation.to_json``); ``TrackedSegmentation.to_json``
    adds its own. ``result`` is a :class:`~segzero_edge.types.Segmentation` (not imported
    here: the result types import this module)."""
    h, w = result.mask.shape[:2]
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "query": result.query,
        "status": result.status.value,
        "height": int(h),
        "width": int(w),
        "objects": [o.to_json() for o in result.objects],
        "iou_predictions": [float(v) for v in result.iou_predictions],
        "object_areas": [int(m.sum()) for m in result.object_masks],
        "mask_area": int(result.mask.sum()),
    }
    if masks:
        out["mask"] = encode_mask(result.mask)
        out["object_masks"] = [encode_mask(m) for m in result.object_masks]
    out["reasoning"] = result.reasoning
    out["answer_raw"] = result.answer_raw
    out["timings"] = {k: float(v) for k, v in result.timings.items()}
    for flag in _FLAGS:
        out[flag] = bool(getattr(result, flag))
    out["generated_tokens"] = int(result.generated_tokens)
    return out


def fields_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The fields every result has, from :func:`to_json`'s dict: masks decoded, ``objects``
    and ``status`` still in their JSON form (the result types build theirs). Raises
    ``ValueError`` for another ``schema_version`` or a dict without masks."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}: this reader knows {SCHEMA_VERSION}")
    if "mask" not in data or "object_masks" not in data:
        raise ValueError("the JSON holds no masks (written with masks=False)")
    mask = decode_mask(data["mask"])
    h, w = mask.shape
    object_masks = np.zeros((len(data["object_masks"]), h, w), dtype=bool)
    for i, rle in enumerate(data["object_masks"]):
        object_masks[i] = decode_mask(rle)
    fields: dict[str, Any] = {
        "mask": mask,
        "object_masks": object_masks,
        "objects": list(data.get("objects", [])),
        "reasoning": data.get("reasoning", ""),
        "answer_raw": data.get("answer_raw", ""),
        "status": data["status"],
        "timings": {k: float(v) for k, v in data.get("timings", {}).items()},
        "iou_predictions": [float(v) for v in data.get("iou_predictions", [])],
        "query": data.get("query", ""),
        "generated_tokens": int(data.get("generated_tokens", 0)),
    }
    fields.update({flag: bool(data.get(flag, False)) for flag in _FLAGS})
    return fields


__all__ = ["SCHEMA_VERSION", "decode_mask", "encode_mask", "fields_from_json", "to_json"]
