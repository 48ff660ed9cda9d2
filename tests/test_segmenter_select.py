"""Numpy mask selection and prompt arrays against Meta's SAM2 code (exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.utils.transforms import SAM2Transforms

from segzero_edge.segmenter.prompts import prompt_arrays
from segzero_edge.segmenter.select import select_masks, stability_scores


def meta_decoder() -> MaskDecoder:
    """A bare MaskDecoder with SAM2.1's image-predictor post-processing settings."""
    return MaskDecoder(
        transformer_dim=32,
        transformer=torch.nn.Identity(),
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    ).eval()


def logits_batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, 4, 32, 32] logits: some single masks stable (far from 0), some not; edge cases."""
    rng = np.random.default_rng(seed)
    b = 6
    low = rng.normal(0, 1, (b, 4, 32, 32)).astype(np.float32)
    low[0, 0] = np.where(low[0, 0] > 0, 5.0, -5.0)  # stable single mask
    low[1, 0] = -10.0  # empty: union 0 -> stability 1
    low[2, 0] = rng.uniform(-0.04, 0.04, (32, 32))  # all inside the +-delta band
    low[3, 0] = np.where(low[3, 0] > 0, 1.0, -1.0)
    low[3, 0, :2, :3] = 0.01  # 6 unstable pixels out of ~512: stability just under/over 0.98
    iou = rng.uniform(0, 1, (b, 4)).astype(np.float32)
    iou[4, 1:] = 0.5  # ties: argmax takes the first
    return low, iou


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_select_matches_meta(seed: int) -> None:
    low, iou = logits_batch(seed)
    dec = meta_decoder()
    t_low, t_iou = torch.from_numpy(low), torch.from_numpy(iou)
    ref_stab = dec._get_stability_scores(t_low[:, :1]).numpy()
    np.testing.assert_array_equal(stability_scores(low[:, :1]), ref_stab)
    ref_masks, ref_iou = dec._dynamic_multimask_via_stability(t_low, t_iou)
    masks, ious = select_masks(low, iou, multimask_output=False)
    np.testing.assert_array_equal(masks, ref_masks.numpy())
    np.testing.assert_array_equal(ious, ref_iou.numpy())
    stable = (ref_stab[:, 0] >= 0.98).tolist()
    print(f"seed {seed}: stability {np.round(ref_stab[:, 0], 4).tolist()}, stable {stable}")
    assert any(stable) and not all(stable), "both branches must be exercised"
    multi, multi_iou = select_masks(low, iou, multimask_output=True)
    np.testing.assert_array_equal(multi, low[:, 1:])
    np.testing.assert_array_equal(multi_iou, iou[:, 1:])
    plain, plain_iou = select_masks(low, iou, multimask_output=False, dynamic=False)
    np.testing.assert_array_equal(plain, low[:, :1])
    np.testing.assert_array_equal(plain_iou, iou[:, :1])


@pytest.mark.parametrize("hw", [(480, 640), (333, 500), (1080, 1920), (7, 13)])
def test_prompt_arrays_match_sam2_transforms(hw: tuple[int, int]) -> None:
    """Bitwise equal to SAM2ImagePredictor._prep_prompts + the box/point concatenation."""
    h, w = hw
    rng = np.random.default_rng(h)
    box = (rng.uniform(0, w / 2, 2).tolist(), rng.uniform(w / 2, w, 2).tolist())
    box_xyxy = [box[0][0], box[0][1] * h / w, box[1][0], box[1][1] * h / w]
    points = rng.uniform(0, min(h, w), (3, 2)).tolist()
    labels = [1, 0, 1]
    coords, labs = prompt_arrays(box_xyxy, points, hw, labels=labels)
    tf = SAM2Transforms(1024, 0.0)
    ref_pts = tf.transform_coords(
        torch.as_tensor(points, dtype=torch.float), normalize=True, orig_hw=hw
    )
    ref_box = tf.transform_boxes(
        torch.as_tensor(box_xyxy, dtype=torch.float), normalize=True, orig_hw=hw
    )
    ref = torch.cat([ref_box, ref_pts[None]], dim=1).numpy()
    np.testing.assert_array_equal(coords, ref)
    np.testing.assert_array_equal(labs, np.array([[2, 3, 1, 0, 1]], dtype=np.float32))
    assert coords.dtype == np.float32 and labs.dtype == np.float32


def test_prompt_arrays_errors() -> None:
    with pytest.raises(ValueError, match="needs a box or at least one point"):
        prompt_arrays(None, [], (10, 10))
    with pytest.raises(ValueError, match="labels"):
        prompt_arrays(None, [(1, 2)], (10, 10), labels=[1, 0])
    coords, labels = prompt_arrays((0, 0, 10, 20), [], (20, 10))
    assert coords.shape == (1, 2, 2) and labels.tolist() == [[2.0, 3.0]]
