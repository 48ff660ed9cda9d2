"""onnxruntime SAM2 (exported graphs + numpy prompt/selection/post-processing) against Meta's
SAM2ImagePredictor with the same random SAM2.1-tiny weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from segzero_edge.backends import ImageEmbedding
from segzero_edge.pixels import postprocess_masks, preprocess_sam
from segzero_edge.segmenter.prompts import prompt_arrays
from segzero_edge.segmenter.select import select_masks
from tests.fixtures.segmenter import SamPrompt

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


BATCH_LOGIT_ATOL = 1e-5  # batched vs one-prompt decoding in the same graph: rounding only


def test_batched_decode_matches_per_prompt_and_predictor(
    ort_segmenter, sam2_predictor, sam2_cases, ort_embeddings
) -> None:
    """All prompts of a case in one decoder call per point count, against one call per prompt
    (same graph) and against Meta's predictor given the same batch (point_coords [B, N, 2],
    box [B, 4])."""
    from segzero_edge.segmenter.prompts import batch_prompts

    worst_self, worst_ref = 0.0, 0.0
    # one case (one predictor set_image) keeps this under ~30 s on 2 cores
    for case, emb in zip(sam2_cases[-1:], ort_embeddings[-1:], strict=True):
        hw = case.image.shape[:2]
        # the case's prompts plus box + point prompts on shifted boxes: batches of 4, 1, 1
        h, w = hw
        extra = [
            SamPrompt(
                (10 + 40 * k, 20 + 30 * k, 0.6 * w + 10 * k, 0.7 * h), [(0.3 * w, 0.4 * h)], [1]
            )
            for k in range(2)
        ]
        prompts = [*case.prompts, *extra]
        arrays = [prompt_arrays(p.box, p.points, hw, labels=p.labels) for p in prompts]
        batches = batch_prompts(arrays)
        assert sorted(len(idx) for idx, _, _ in batches) == [1, 1, 4]
        sam2_predictor.set_image(case.image)
        for idx, coords, labels in batches:
            low, iou = ort_segmenter.decode(emb, coords, labels)
            assert low.shape == (len(idx), 4, 256, 256) and iou.shape == (len(idx), 4)
            boxes = [prompts[i].box for i in idx]
            ref = sam2_predictor.predict(
                point_coords=np.asarray([prompts[i].points for i in idx], dtype=np.float32),
                point_labels=np.asarray([prompts[i].labels for i in idx], dtype=np.int32),
                box=None if boxes[0] is None else np.asarray(boxes, dtype=np.float32),
                multimask_output=True,
                return_logits=True,
            )
            ref_masks, ref_ious, ref_low = (np.asarray(r) for r in ref)
            if len(idx) == 1:  # the predictor drops the batch axis for a batch of one
                ref_masks, ref_ious, ref_low = ref_masks[None], ref_ious[None], ref_low[None]
            for row, i in enumerate(idx):
                one_low, one_iou = ort_segmenter.decode(emb, *arrays[i])
                d = float(np.abs(low[row] - one_low[0]).max())
                worst_self = max(worst_self, d, float(np.abs(iou[row] - one_iou[0]).max()))
                assert d < BATCH_LOGIT_ATOL, f"{case.name} prompt {i}: batched vs alone {d:.2e}"
                masks, ious = select_masks(low[row : row + 1], iou[row : row + 1])
                one_masks, one_ious = select_masks(one_low, one_iou)
                best = int(np.argmax(ious[0]))
                assert best == int(np.argmax(one_ious[0]))
                got = postprocess_masks(masks[0, best], hw).mask
                np.testing.assert_array_equal(got, postprocess_masks(one_masks[0, best], hw).mask)
                # Meta's predictor on the same batch (logits clamped to [-32, 32] there)
                d_ref = float(np.abs(np.clip(low[row, 1:], -32, 32) - ref_low[row]).max())
                d_iou = float(np.abs(iou[row, 1:] - ref_ious[row]).max())
                worst_ref = max(worst_ref, d_ref)
                assert d_ref < LOGIT_ATOL and d_iou < IOU_ATOL, (case.name, i, d_ref, d_iou)
                assert best == int(np.argmax(ref_ious[row]))
                assert mask_iou(got, ref_masks[row, best] > 0) >= MASK_IOU_MIN
    print(
        f"batched decode: max abs diff vs one prompt per call {worst_self:.2e}, "
        f"vs Meta's batched predictor (logits) {worst_ref:.2e}"
    )
