"""Choose among SAM2's four decoder masks, as ``SAM2ImagePredictor`` does (numpy)."""

from __future__ import annotations

import numpy as np

STABILITY_DELTA = 0.05
STABILITY_THRESH = 0.98


def stability_scores(logits: np.ndarray, delta: float = STABILITY_DELTA) -> np.ndarray:
    """IoU between the masks thresholded at ``+delta`` and ``-delta`` (over the last 2 axes)."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    inter = (flat > delta).sum(-1).astype(np.float32)
    union = (flat > -delta).sum(-1).astype(np.float32)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).astype(np.float32)


def select_masks(
    low_res: np.ndarray, iou: np.ndarray, multimask_output: bool = True, dynamic: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """From ``[B, 4, h, w]`` logits and ``[B, 4]`` IoU keep what SAM2's mask decoder returns.

    ``multimask_output``: the three multimask outputs. Otherwise the single-mask output,
    replaced by the best multimask output when it is unstable (``dynamic``, as SAM2.1).
    """
    if multimask_output:
        return low_res[:, 1:], iou[:, 1:]
    single, single_iou = low_res[:, :1], iou[:, :1]
    if not dynamic:
        return single, single_iou
    best = np.argmax(iou[:, 1:], axis=-1)
    rows = np.arange(low_res.shape[0])
    best_logits = low_res[rows, best + 1][:, None]
    best_iou = iou[rows, best + 1][:, None]
    stable = stability_scores(single)[:, :, None, None] >= STABILITY_THRESH
    out = np.where(stable, single, best_logits)
    out_iou = np.where(stable[:, :, 0, 0], single_iou, best_iou)
    return out.astype(np.float32), out_iou.astype(np.float32)
