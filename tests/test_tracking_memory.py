"""The tracker's bookkeeping: which memories and pointers a frame attends to (SAM2's rules in
``SAM2Base._prepare_memory_conditioned_features``), the output choice of ``_use_multimask``,
bfloat16 storage, bounded memory, settings, and what an old bundle says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from segzero_edge.bundle_memory import manifest_tracking, open_memory
from segzero_edge.errors import BundleError
from segzero_edge.segmenter.memory import (
    TrackingConfig,
    from_bfloat16,
    to_bfloat16,
)
from segzero_edge.tracking.memory_selection import (
    FrameMemory,
    ObjectMemory,
    choose_output,
    memory_frames,
    pointer_frames,
    prune_memory,
)

CFG = TrackingConfig()


def test_memory_frames_full_memory() -> None:
    """Frame 20: the conditioning frame, then frames 14 .. 19 as t_pos 1 .. 6."""
    got = memory_frames(20, [0], set(range(1, 20)), CFG)
    assert got == [(0, 0), (1, 14), (2, 15), (3, 16), (4, 17), (5, 18), (6, 19)]


def test_memory_frames_early_and_stride() -> None:
    # frame 3: only frames 1 and 2 exist besides the conditioning frame (t_pos 5, 6)
    assert memory_frames(3, [0], {1, 2}, CFG) == [(0, 0), (5, 1), (6, 2)]
    # memory_temporal_stride_for_eval = 2 at frame 10: the last frame, then every 2nd
    # from ((10 - 2) // 2) * 2 = 8 back; frame 0 is the conditioning frame, not repeated
    strided = TrackingConfig(memory_temporal_stride_for_eval=2)
    got = memory_frames(10, [0], set(range(1, 10)), strided)
    assert got == [(0, 0), (2, 2), (3, 4), (4, 6), (5, 8), (6, 9)]


def test_pointer_frames() -> None:
    ptrs, t_diff_max = pointer_frames(20, [0], set(range(1, 20)), CFG)
    assert t_diff_max == 15
    assert ptrs == [(20, 0)] + [(d, 20 - d) for d in range(1, 16)]
    # a 10-frame clip (SAM2VideoPredictor's num_frames): max_obj_ptrs = 10, t_diff_max = 9
    ptrs, t_diff_max = pointer_frames(5, [0], {1, 2, 3, 4}, CFG, num_frames=10)
    assert t_diff_max == 9 and ptrs == [(5, 0), (1, 4), (2, 3), (3, 2), (4, 1)]


def test_prune_keeps_what_later_frames_select() -> None:
    state = ObjectMemory(cond={0: FrameMemory(np.zeros(2, np.uint16), np.zeros(4))})
    for t in range(1, 40):
        state.non_cond[t] = FrameMemory(np.zeros(2, np.uint16), np.zeros(4))
        prune_memory(state, t, CFG)
        nxt = t + 1
        for t_pos, f in memory_frames(nxt, state.cond, state.non_cond, CFG):
            held = state.cond[f] if t_pos == 0 else state.non_cond[f]
            assert held.features is not None, f"frame {nxt} needs features of {f}"
        want = {f for _, f in pointer_frames(nxt, [0], set(range(1, nxt)), CFG)[0]}
        have = {f for _, f in pointer_frames(nxt, state.cond, state.non_cond, CFG)[0]}
        assert have == want, f"frame {nxt}: pointers {sorted(have)} vs {sorted(want)}"
    with_features = [f for f, m in state.non_cond.items() if m.features is not None]
    assert len(state.non_cond) == CFG.max_obj_ptrs_in_encoder - 1
    assert len(with_features) == CFG.num_maskmem - 1


def test_choose_output_follows_use_multimask() -> None:
    rng = np.random.default_rng(0)
    masks = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    iou = np.array([[0.9, 0.2, 0.7, 0.5]], dtype=np.float32)
    # tracked frame (no points): best multimask output and its own token
    logits, best_iou, token = choose_output(masks, iou, 0, False, CFG)
    assert token == 2 and best_iou == pytest.approx(0.7) and np.array_equal(logits, masks[0, 2])
    # one click on the seed frame: multimask too
    assert choose_output(masks, iou, 1, True, CFG)[2] == 2
    # box + point (3 points): the single-mask token 0; its mask falls back to the best
    # multimask output when unstable (these random logits are)
    logits, best_iou, token = choose_output(masks, iou, 3, True, CFG)
    assert token == 0 and np.array_equal(logits, masks[0, 2])
    stable = masks.copy()
    stable[0, 0] = 20.0
    logits, best_iou, token = choose_output(stable, iou, 3, True, CFG)
    assert token == 0 and np.array_equal(logits, stable[0, 0]) and best_iou == pytest.approx(0.9)
    # without use_multimask_token_for_obj_ptr the pointer is always token 0
    single_token = TrackingConfig(use_multimask_token_for_obj_ptr=False)
    assert choose_output(masks, iou, 0, False, single_token)[2] == 0


def test_bfloat16_matches_torch() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.normal(0, 3, 10_000).astype(np.float32),
            np.array([0.0, -0.0, 1e-30, -1e30, 3.0e38, 1.00390625, 1.01171875], np.float32),
        ]
    )
    ref = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    bits = to_bfloat16(x)
    assert bits.dtype == np.uint16 and bits.nbytes == x.nbytes // 2
    np.testing.assert_array_equal(from_bfloat16(bits), ref)


def test_tracking_config_from_json() -> None:
    cfg = TrackingConfig.from_json({"num_maskmem": 5, "pred_obj_scores": False, "extra": 1})
    assert cfg.num_maskmem == 5 and cfg.pred_obj_scores is False
    assert TrackingConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="num_maskmem must be int"):
        TrackingConfig.from_json({"num_maskmem": "7"})
    with pytest.raises(ValueError, match="pred_obj_scores must be bool"):
        TrackingConfig.from_json({"pred_obj_scores": 1})
    with pytest.raises(ValueError, match="num_maskmem must be >= 1"):
        TrackingConfig.from_json({"num_maskmem": 0})
    with pytest.raises(ValueError, match="must be a JSON object"):
        TrackingConfig.from_json([1, 2])


def test_bundle_without_memory_graphs(bundle_copy: Path) -> None:
    """An old bundle (no memory graphs, no tracking settings): open_memory names the fix; a
    manifest without tracking settings is read as None, a broken one is a BundleError."""
    from segzero_edge.layout import SAM2_MEMORY_FILES

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    for name in SAM2_MEMORY_FILES:
        (bundle_copy / name).unlink()
        del manifest["files"][name]
    del manifest["segmenter"]["tracking"]

    def write(m: dict[str, Any]) -> None:
        (bundle_copy / "manifest.json").unlink()  # a hard link: replace, never edit in place
        (bundle_copy / "manifest.json").write_text(json.dumps(m))

    write(manifest)
    with pytest.raises(BundleError, match="re-export"):
        open_memory(bundle_copy)
    assert manifest_tracking(bundle_copy) is None
    manifest["segmenter"]["tracking"] = {"mem_dim": "x"}
    write(manifest)
    with pytest.raises(BundleError, match="mem_dim must be int"):
        manifest_tracking(bundle_copy)


def test_old_decoder_cannot_track_but_segments(
    sam2_onnx: dict[str, Any], ort_memory: Any, tmp_path: Path
) -> None:
    """A decoder graph exported before tracking (no object score / pointer outputs): segment()
    works, track() raises BundleError asking for a re-export."""
    import onnx

    from segzero_edge import SegZeroEdge
    from segzero_edge.segmenter.onnxruntime import OrtSegmenter
    from tests.fixtures.tracking import QUERY, ScriptedReasoner, seed_prompt, synthetic_clip

    model = onnx.load(str(sam2_onnx["slim"]["decoder"]))
    keep = [o for o in model.graph.output if o.name in ("masks", "iou_predictions")]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    old = tmp_path / "sam2_decoder.onnx"
    onnx.save(model, str(old))
    seg = OrtSegmenter(sam2_onnx["slim"]["encoder"], old, providers=["CPUExecutionProvider"])
    assert not seg.can_track
    frame = synthetic_clip(1)[0]
    sz = SegZeroEdge(
        ScriptedReasoner([seed_prompt(18)]), seg, family="multi-object", memory=ort_memory
    )
    assert sz.segment(frame, QUERY).mask.any()
    with pytest.raises(BundleError, match="re-export"):
        sz.track(frame, QUERY)
