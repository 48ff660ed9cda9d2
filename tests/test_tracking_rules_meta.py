"""The tracker's pure SAM2 rules (segzero_edge.tracking.memory_selection) against Meta's own
code, over many generated cases: ``select_closest_cond_frames`` called as is, the memory and
pointer choice of ``SAM2Base._prepare_memory_conditioned_features`` run unbound on a stand-in
``self`` whose memory features and pointers carry their frame index (what the method selects
is read back from what it hands to memory attention), ``SAM2Base._use_multimask`` called as
is, and ``NO_OBJ_SCORE``."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
import torch
from sam2.modeling import sam2_base
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam2_utils import select_closest_cond_frames

from segzero_edge.segmenter.memory import TrackingConfig
from segzero_edge.tracking.memory_selection import (
    NO_OBJECT_SCORE,
    gate_no_object,
    memory_frames,
    pointer_frames,
    pointer_tpos,
    select_cond_frames,
    use_multimask,
)

CASES = 1500
C = 4  # hidden_dim = mem_dim: Meta splits no pointer into tokens


def _case(rng: np.random.Generator) -> dict[str, Any]:
    frame_idx = int(rng.integers(1, 60 if rng.random() < 0.5 else 12))  # early frames too
    n_cond = int(rng.integers(1, 5))
    cond = [int(t) for t in rng.choice(frame_idx + 10, size=n_cond, replace=False)]
    non_cond = {t for t in range(frame_idx) if t not in cond and rng.random() < 0.8}
    last = max([frame_idx, *cond])
    extra = int(rng.integers(0, 3 if rng.random() < 0.5 else 30))  # clips ending soon too
    num_frames = None if rng.random() < 0.3 else last + 1 + extra
    cfg = TrackingConfig(
        num_maskmem=int(rng.integers(1, 10)),
        memory_temporal_stride_for_eval=int(rng.integers(1, 6)),
        max_obj_ptrs_in_encoder=int(rng.integers(2, 21)),
        use_signed_tpos_enc_to_obj_ptrs=bool(rng.random() < 0.5),
    )
    max_cond = int(rng.choice([-1, 2, 3, 4]))
    return dict(
        frame_idx=frame_idx, cond=cond, non_cond=non_cond, num_frames=num_frames, cfg=cfg,
        max_cond=max_cond,
    )  # fmt: skip


def _entry(frame: int) -> dict[str, Any]:
    """A memory whose features and pointer are the frame index (what Meta's output_dict holds)."""
    return {
        "maskmem_features": torch.full((1, C, 1, 1), float(frame)),
        "maskmem_pos_enc": [torch.zeros(1, C, 1, 1)],
        "obj_ptr": torch.full((1, C), float(frame)),
    }


def _meta_selection(
    case: dict[str, Any],
) -> tuple[list[tuple[int, int]], list[tuple[int, float]]]:
    """``([(t_pos, frame)], [(frame, pointer tpos)])`` that Meta's method hands to memory
    attention. The temporal encoding of ``t_pos`` is the value ``num_maskmem - t_pos``; the
    pointers' sine encoding is the identity (``get_1d_sine_pe`` patched), so their positional
    rows are ``distance / t_diff_max``."""
    cfg: TrackingConfig = case["cfg"]
    seen: dict[str, Any] = {}

    def attention(curr: Any, curr_pos: Any, memory: Any, memory_pos: Any, num_obj_ptr_tokens: int):
        seen.update(memory=memory, memory_pos=memory_pos, n_ptr=num_obj_ptr_tokens)
        return curr[-1]

    model = types.SimpleNamespace(
        hidden_dim=C,
        mem_dim=C,
        num_maskmem=cfg.num_maskmem,
        max_cond_frames_in_attn=case["max_cond"],
        training=False,
        memory_temporal_stride_for_eval=cfg.memory_temporal_stride_for_eval,
        maskmem_tpos_enc=torch.arange(cfg.num_maskmem, dtype=torch.float32)
        .add(1)
        .reshape(-1, 1, 1, 1)
        .expand(-1, 1, 1, C),
        use_obj_ptrs_in_encoder=cfg.use_obj_ptrs_in_encoder,
        max_obj_ptrs_in_encoder=cfg.max_obj_ptrs_in_encoder,
        only_obj_ptrs_in_the_past_for_eval=True,
        use_signed_tpos_enc_to_obj_ptrs=cfg.use_signed_tpos_enc_to_obj_ptrs,
        add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=False,
        obj_ptr_tpos_proj=torch.nn.Identity(),
        memory_attention=attention,
    )
    output_dict = {
        "cond_frame_outputs": {t: _entry(t) for t in case["cond"]},
        "non_cond_frame_outputs": {t: _entry(t) for t in sorted(case["non_cond"])},
    }
    # a live stream (num_frames None) is a clip longer than any pointer reaches back
    num_frames = case["num_frames"] if case["num_frames"] is not None else 10**6
    feats = [torch.zeros(1, 1, C)]
    SAM2Base._prepare_memory_conditioned_features(
        model, case["frame_idx"], False, feats, feats, [(1, 1)], output_dict, num_frames
    )
    memory, pos, n_ptr = seen["memory"][:, 0, 0], seen["memory_pos"][:, 0, 0], seen["n_ptr"]
    n_mem = len(memory) - n_ptr
    mems = [
        (cfg.num_maskmem - int(p), int(f)) for f, p in zip(memory[:n_mem], pos[:n_mem], strict=True)
    ]
    ptrs = [(int(f), float(p)) for f, p in zip(memory[n_mem:], pos[n_mem:], strict=True)]
    return mems, ptrs


@pytest.fixture
def identity_sine_pe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam2_base, "get_1d_sine_pe", lambda pos, dim: pos[:, None].expand(-1, dim))


def test_cond_frame_choice_is_select_closest_cond_frames() -> None:
    rng = np.random.default_rng(0)
    for _ in range(CASES):
        case = _case(rng)
        frames = {t: f"out{t}" for t in case["cond"]}
        meta_sel, meta_unsel = select_closest_cond_frames(
            case["frame_idx"], frames, case["max_cond"]
        )
        sel, unsel = select_cond_frames(case["frame_idx"], case["cond"], case["max_cond"])
        assert (sel, unsel) == (list(meta_sel), list(meta_unsel)), case
    with pytest.raises(ValueError, match="max_cond_frame_num must be -1 or >= 2"):
        select_cond_frames(5, [0, 1, 2], 1)


def test_memory_and_pointer_choice_is_prepare_memory_conditioned_features(
    identity_sine_pe: None,
) -> None:
    """Per case: the memories (t_pos, frame) in Meta's order, the pointers' frames in order and
    their temporal positions as float32, bit for bit."""
    rng = np.random.default_rng(1)
    with_unselected = with_clip_end = 0
    for _ in range(CASES):
        case = _case(rng)
        meta_mems, meta_ptrs = _meta_selection(case)
        args = (case["frame_idx"], case["cond"], case["non_cond"], case["cfg"])
        assert memory_frames(*args, max_cond_frame_num=case["max_cond"]) == meta_mems, case
        ptrs, t_diff_max = pointer_frames(
            *args, num_frames=case["num_frames"], max_cond_frame_num=case["max_cond"]
        )
        assert [f for _, f in ptrs] == [f for f, _ in meta_ptrs], case
        tpos = pointer_tpos((d for d, _ in ptrs), t_diff_max)
        want = np.asarray([p for _, p in meta_ptrs], dtype=np.float32)
        np.testing.assert_array_equal(tpos, want, err_msg=str(case))
        unselected = select_cond_frames(case["frame_idx"], case["cond"], case["max_cond"])[1]
        with_unselected += any(t_pos > 0 and f in unselected for t_pos, f in meta_mems)
        n = case["num_frames"]
        with_clip_end += n is not None and n < case["cfg"].max_obj_ptrs_in_encoder
    # the generated cases reach the rules' rarer branches
    assert with_unselected > 20 and with_clip_end > 20


def test_multimask_choice_is_use_multimask() -> None:
    for in_sam in (True, False):
        for for_tracking in (True, False):
            for lo, hi in ((0, 1), (1, 1), (0, 3), (2, 5)):
                cfg = TrackingConfig(
                    multimask_output_in_sam=in_sam,
                    multimask_output_for_tracking=for_tracking,
                    multimask_min_pt_num=lo,
                    multimask_max_pt_num=hi,
                )
                model = types.SimpleNamespace(
                    multimask_output_in_sam=in_sam,
                    multimask_output_for_tracking=for_tracking,
                    multimask_min_pt_num=lo,
                    multimask_max_pt_num=hi,
                )
                for init in (True, False):
                    for n in range(6):
                        points = None if n == 0 else {"point_labels": torch.zeros(1, n)}
                        want = SAM2Base._use_multimask(model, init, points)
                        assert use_multimask(cfg, init, n) == want, (cfg, init, n)


def test_no_object_gate_is_sam2s() -> None:
    assert NO_OBJECT_SCORE == sam2_base.NO_OBJ_SCORE
    logits = np.linspace(-3, 3, 16, dtype=np.float32).reshape(4, 4)
    cfg = TrackingConfig()
    for score in (2.0, 1e-6, 0.0, -0.5, float("nan")):
        meta = torch.where(
            torch.tensor(score) > 0, torch.from_numpy(logits), torch.tensor(sam2_base.NO_OBJ_SCORE)
        ).numpy()
        np.testing.assert_array_equal(gate_no_object(logits, score, cfg), meta)
    off = TrackingConfig(pred_obj_scores=False)
    np.testing.assert_array_equal(gate_no_object(logits, -5.0, off), logits)
