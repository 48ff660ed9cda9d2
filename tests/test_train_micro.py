"""The micro model recipe (segzero_train.micro, micro_sam2; segzero_export.micro_sam2)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segzero_train import micro, micro_sam2


def test_grpo_stage_arguments_parse_into_the_multi_object_recipe(tmp_path: Path) -> None:
    from segzero_train.config import parse_args

    r = micro.Recipe()
    argv = micro.grpo_argv(r, tmp_path / "sft", tmp_path / "data", tmp_path / "grpo")
    script, cfg = parse_args(argv, world_size=1)
    assert script.reward == "multi_object" and script.model_family.name == "multi-object"
    assert script.image_size == r.image_size == 336
    assert cfg.max_steps == r.grpo_steps and cfg.save_steps == r.grpo_save_steps
    assert cfg.num_generations == r.num_generations
    assert cfg.gradient_accumulation_steps == 1  # one optimizer step per prompts_per_step batch
    assert cfg.seed == r.seed and cfg.use_cpu


def test_a_run_folder_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    saved = dataclasses.asdict(micro.Recipe(sft_steps=5))
    (out / "recipe.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="other settings"):
        micro.run(out, micro.Recipe(sft_steps=6))
    assert json.loads((out / "recipe.json").read_text()) == saved
    assert not (out / "data").exists()


def test_micro_sam2_keeps_sam2s_interfaces_with_a_small_trunk() -> None:
    from segzero_export.micro_sam2 import build_micro_sam2

    model = build_micro_sam2()
    assert model.image_size == 1024
    assert model.image_encoder.neck.d_model == 256
    assert model.image_encoder.trunk.blocks[0].dim == 32
    assert len(model.image_encoder.trunk.blocks) == 5
    assert model.mem_dim == 64
    n = sum(p.numel() for p in model.parameters())
    assert n < 9_000_000, n
    ex = micro_sam2.draw_batch(0, 0, 1, (112, 84))
    with torch.inference_mode():
        low_res, iou = micro_sam2.predict_low_res(model, ex)
    assert tuple(low_res.shape) == (1, 3, 256, 256) and tuple(iou.shape) == (1, 3)


def test_sam2_loss_prefers_the_right_mask_and_a_true_iou() -> None:
    target = torch.zeros(1, 1, 256, 256)
    target[..., 64:192, 64:192] = 1
    right = target.expand(1, 3, 256, 256) * 20 - 10
    wrong = -right
    iou_right = torch.ones(1, 3)
    loss_right, parts = micro_sam2.loss_fn(right, iou_right, target)
    loss_wrong, _ = micro_sam2.loss_fn(wrong, iou_right, target)
    assert parts["iou"] == pytest.approx(1.0)
    assert float(loss_right) < 0.05 < float(loss_wrong)
    loss_bad_iou, _ = micro_sam2.loss_fn(right, torch.zeros(1, 3), target)
    assert float(loss_bad_iou) == pytest.approx(float(loss_right) + 1.0, abs=1e-4)


def test_sam2_examples_are_deterministic_and_prompt_inside_the_object() -> None:
    a = micro_sam2.draw_batch(3, 7, 2, (112, 84))
    b = micro_sam2.draw_batch(3, 7, 2, (112, 84))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["mask"], y["mask"]) and x["box"] == y["box"]
        px, py = x["point"]
        assert x["mask"][py, px]


@pytest.mark.slow
def test_smoke_run_trains_every_stage_and_resumes(tmp_path: Path) -> None:
    """A few steps of every stage, end to end; a second call redoes nothing."""
    out = tmp_path / "run"
    assert micro.main(["--out", str(out), "--smoke"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data_seed"] == micro.DATA_SEED
    assert (out / "grpo" / "reward_table.tsv").is_file()
    assert (out / "sft" / "config.json").is_file()
    ckpt = torch.load(out / "sam2" / "sam2_micro.pt", map_location="cpu", weights_only=True)
    assert "model" in ckpt
    assert 0.0 <= results["sam2_heldout"]["mean_iou"] <= 1.0
    for split in ("heldout_scenes", "heldout_compositions"):
        parts = results["heldout"][split]
        assert set(parts) == {"model", "model_on_flat_images", "query_only"}
        assert parts["model"]["segzero"]["all"]["n"] == 2
    rows = json.loads((out / "eval" / "flat_heldout_scenes.json").read_text())["rows"]
    assert len(rows) == 2 and all("answer" in row for row in rows)
    stamp = (out / "sft" / "config.json").stat().st_mtime_ns
    assert micro.main(["--out", str(out), "--smoke"]) == 0
    assert (out / "sft" / "config.json").stat().st_mtime_ns == stamp
    assert "already done" in (out / "log.txt").read_text()
