"""onnxruntime SAM2 (exported graphs + numpy prompt/selection/post-processing) against Meta's
SAM2ImagePredictor with the same random SAM2.1-tiny weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from segzero_edge.backends import ImageEmbedding
from segzero_edge.pixels import postprocess_masks, preprocess_sam
from segzero_edge.segmenter.prompts import prompt_arrays
from segzero_edge.segmenter.select import select_masks

MASK_IOU_MIN = 0.99
FEATURE_ATOL = 1e-3
LOGIT_ATOL = 1e-3
IOU_ATOL = 1e-4


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def run_prompt(seg: Any, emb: ImageEmbedding, prompt: Any, hw: tuple[int, int]):
    coords, labels = prompt_arrays(prompt.box, prompt.points, hw, labels=prompt.labels)
    return seg.decode(emb, coords, labels)


def test_encoder_matches_predictor(sam2_cases, ort_embeddings) -> None:
    for case, emb in zip(sam2_cases, ort_embeddings, strict=True):
        for name, ref in case.features.items():
            got = getattr(emb, name)
            assert got.shape == ref.shape, (name, got.shape, ref.shape)
            diff = float(np.abs(got - ref).max())
            scale = float(np.abs(ref).max())
            print(f"[{case.name}] encoder {name}: max abs diff {diff:.2e} (ref max {scale:.2f})")
            assert diff < FEATURE_ATOL, f"{case.name} {name}: max abs diff {diff:.2e}"


def test_decoder_logits_match_predictor(ort_segmenter, sam2_cases, ort_embeddings) -> None:
    """All four raw low-res logits and IoU scores, for box+point, box+pos/neg, point-only."""
    worst_logit, worst_iou = 0.0, 0.0
    for case, emb in zip(sam2_cases, ort_embeddings, strict=True):
        hw = case.image.shape[:2]
        for i, (prompt, ref) in enumerate(zip(case.prompts, case.results, strict=True)):
            low, iou = run_prompt(ort_segmenter, emb, prompt, hw)
            assert low.shape == (1, 4, 256, 256) and iou.shape == (1, 4)
            ref_low, ref_iou = ref["all"]
            # the predictor returns logits clamped to [-32, 32]
            d_logit = float(np.abs(np.clip(low[0], -32, 32) - ref_low).max())
            d_iou = float(np.abs(iou[0] - ref_iou).max())
            worst_logit, worst_iou = max(worst_logit, d_logit), max(worst_iou, d_iou)
            print(
                f"[{case.name} prompt {i}] logits max abs diff {d_logit:.2e} "
                f"(range {ref_low.min():.3f}..{ref_low.max():.3f}), IoU diff {d_iou:.2e}"
            )
            assert d_logit < LOGIT_ATOL, f"{case.name} prompt {i}: logits diff {d_logit:.2e}"
            assert d_iou < IOU_ATOL, f"{case.name} prompt {i}: IoU diff {d_iou:.2e}"
    print(f"decoder worst: logits {worst_logit:.2e}, IoU {worst_iou:.2e}")


def test_final_masks_match_predictor(ort_segmenter, sam2_cases, ort_embeddings) -> None:
    """Multimask (argmax IoU, as the pipeline) and single-mask (dynamic stability) selection."""
    worst = 1.0
    for case, emb in zip(sam2_cases, ort_embeddings, strict=True):
        hw = case.image.shape[:2]
        for i, (prompt, ref) in enumerate(zip(case.prompts, case.results, strict=True)):
            low, iou = run_prompt(ort_segmenter, emb, prompt, hw)
            # multimask_output=True, keep the best
            masks, ious = select_masks(low, iou, multimask_output=True)
            ref_masks, ref_ious, _ = ref["multi"]
            best, ref_best = int(np.argmax(ious[0])), int(np.argmax(ref_ious))
            assert best == ref_best, f"{case.name} prompt {i}: best mask {best} vs {ref_best}"
            got = postprocess_masks(masks[0, best], hw).mask
            m_iou = mask_iou(got, ref_masks[best] > 0)
            # multimask_output=False with SAM2.1's dynamic fallback
            single, single_iou = select_masks(low, iou, multimask_output=False)
            ref_single, ref_single_iou, _ = ref["single"]
            assert abs(float(single_iou[0, 0]) - float(ref_single_iou[0])) < IOU_ATOL
            got_s = postprocess_masks(single[0, 0], hw).mask
            s_iou = mask_iou(got_s, ref_single[0] > 0)
            fallback = not np.allclose(single[0, 0], low[0, 0])
            worst = min(worst, m_iou, s_iou)
            print(
                f"[{case.name} prompt {i}] multimask best={best} IoU {m_iou:.5f} "
                f"(area {got.mean():.3f}); single IoU {s_iou:.5f} (fallback={fallback})"
            )
            assert m_iou >= MASK_IOU_MIN, f"{case.name} prompt {i}: multimask IoU {m_iou:.5f}"
            assert s_iou >= MASK_IOU_MIN, f"{case.name} prompt {i}: single IoU {s_iou:.5f}"
    print(f"final masks worst IoU {worst:.5f}")


def test_runtime_path_matches_predictor(ort_segmenter, sam2_cases) -> None:
    """The whole numpy runtime path from the uint8 image, preprocess_sam included (500x333)."""
    for case in sam2_cases[1:]:
        hw = case.image.shape[:2]
        x = preprocess_sam(case.image)
        d_pre = float(np.abs(x - case.sam_input).max())
        emb = ort_segmenter.encode(x)
        d_emb = float(np.abs(emb.image_embed - case.features["image_embed"]).max())
        for i, (prompt, ref) in enumerate(zip(case.prompts, case.results, strict=True)):
            low, iou = run_prompt(ort_segmenter, emb, prompt, hw)
            masks, ious = select_masks(low, iou, multimask_output=True)
            best = int(np.argmax(ious[0]))
            ref_masks, ref_ious, _ = ref["multi"]
            got = postprocess_masks(masks[0, best], hw).mask
            m_iou = mask_iou(got, ref_masks[int(np.argmax(ref_ious))] > 0)
            print(
                f"[{case.name} prompt {i}] runtime path: preprocess max abs diff {d_pre:.2e}, "
                f"image_embed diff {d_emb:.2e}, mask IoU {m_iou:.5f}"
            )
            assert m_iou >= MASK_IOU_MIN, (
                f"{case.name} prompt {i}: mask IoU {m_iou:.5f} (preprocess diff {d_pre:.2e})"
            )
