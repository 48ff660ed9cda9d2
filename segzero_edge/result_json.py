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


def _rle_runs(counts: bytes) -> list[int]:
    """COCO's compressed ``counts`` string -> run lengths, as ``rleFrString`` of the COCO API's
    ``maskApi.c`` reads it (5-bit groups from ``"0"``, ``0x20`` continues, ``0x10`` the sign
    of the last group, runs after the second stored as the difference to the one two back).
    ``ValueError`` for a character outside the alphabet or a cut-off number."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("counts ends inside a number")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"counts holds {chr(counts[p])!r}, not a COCO RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` as str or bytes) -> H x W bool.

    Checked before anything is allocated (the COCO API's C decoder writes past its buffer
    when the runs cover more than H x W pixels): ``ValueError`` unless ``size`` is two
    whole numbers >= 0 and ``counts`` is an ASCII string whose runs, all >= 0, cover
    exactly H x W pixels. Decoded with numpy (column-major runs from 0s), as
    ``pycocotools.mask.decode``."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError('a mask is COCO RLE: {"size": [H, W], "counts": str}')
    size = rle["size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise ValueError(f"size must be [H, W], two whole numbers >= 0, got {size!r}")
    h, w = size
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("counts is not ASCII (COCO RLE characters)") from None
    if not isinstance(counts, bytes):
        raise ValueError(f"counts must be a string, got {type(counts).__name__}")
    runs = _rle_runs(counts)
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"counts do not cover the {h} x {w} pixels of its size")
    values = np.arange(len(runs)) % 2 == 1
    return np.ascontiguousarray(np.repeat(values, runs).reshape(w, h).T)


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
