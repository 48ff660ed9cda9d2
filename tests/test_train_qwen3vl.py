"""SFT and GRPO on Qwen3-VL with Seg-Zero's recipe and rewards: the ground truth on the 0-1000
grid the model answers in, the reward thresholds kept in pixels of the model's 832 frame
(``ModelFamily.units_per_pixel`` = 1000 / 832), the image size and architecture checked against
the family, and a CPU SFT + GRPO step on the tiny random Qwen3-VL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from segzero_edge.families import MULTI_OBJECT, QWEN3VL_GROUNDING, SEGZERO_V1
from segzero_train.config import check_family_architecture, parse_args
from segzero_train.gt import ground_truth_from_mask, rescale_ground_truth
from segzero_train.rewards import GroundTruth, multi_object_rewards, segzero_rewards
from tests.fixtures.train_model import QWEN3VL_TRAIN_IMAGE_SIZE, TINY_CPU_CONFIG

U = 1000 / 832
"""Grid units per pixel of the qwen3vl-grounding family's 832 frame."""


def _answer(box: list[int], point: list[int]) -> str:
    return f'<think>t</think><answer>[{{"bbox_2d": {box}, "point_2d": {point}}}]</answer>'


def test_units_per_pixel_of_the_families() -> None:
    assert QWEN3VL_GROUNDING.units_per_pixel == U
    assert MULTI_OBJECT.units_per_pixel == SEGZERO_V1.units_per_pixel == 1.0


def test_reward_thresholds_keep_their_meaning_in_pixels() -> None:
    gt = GroundTruth(boxes=[[100, 100, 500, 500]], points=[[300, 300]])
    # box L1 < 10 px: 11 grid units are 9.15 px of the 832 frame, 13 units 10.8 px
    near = _answer([111, 111, 511, 511], [300, 300])
    far = _answer([113, 113, 513, 513], [300, 300])
    assert segzero_rewards(near, gt, units_per_pixel=U)["box_l1"] == 1.0
    assert segzero_rewards(near, gt)["box_l1"] == 0.0  # 11 < 10 fails in pixel units
    assert segzero_rewards(far, gt, units_per_pixel=U)["box_l1"] == 0.0
    # single-object point distance < 100 px: 110 units = 91.5 px
    pt = _answer([100, 100, 500, 500], [410, 300])
    assert segzero_rewards(pt, gt, units_per_pixel=U)["points"] == 1.0
    assert segzero_rewards(pt, gt)["points"] == 0.0
    # multi-object point distance < 30 px: 35 units = 29.1 px, 37 units = 30.8 px
    ok = _answer([100, 100, 500, 500], [335, 300])
    off = _answer([100, 100, 500, 500], [337, 300])
    assert multi_object_rewards(ok, gt, units_per_pixel=U)["accuracy"] == 3.0
    assert multi_object_rewards(ok, gt)["accuracy"] == 2.0
    assert multi_object_rewards(off, gt, units_per_pixel=U)["accuracy"] == 2.0
    for bad in (0, -1.0, math.nan, math.inf, "x"):
        with pytest.raises(ValueError, match="units_per_pixel"):
            segzero_rewards(near, gt, units_per_pixel=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="units_per_pixel"):
            multi_object_rewards(near, gt, units_per_pixel=bad)  # type: ignore[arg-type]


def test_ground_truth_rescales_from_the_840_frame_to_the_grid() -> None:
    gt = GroundTruth(boxes=[[0, 0, 839, 420]], points=[[420, 210]])
    out = rescale_ground_truth(gt, 840, 1000)
    # int(v * 1000 / 840 + 0.5), clamped to [0, 999]
    assert out.boxes == [(0, 0, 999, 500)] and out.points == [(500, 250)]
    assert rescale_ground_truth(gt, 840, 840) is gt
    with pytest.raises(ValueError, match="> 0"):
        rescale_ground_truth(gt, 0, 1000)


def test_training_rows_are_on_the_grid(
    tiny_qwen3vl_dir: Path, train_synthetic_dir: Path, train_segzero_set_dir: Path
) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    from segzero_train.data import (
        image_token_count,
        parse_solution,
        prompt_token_count,
        training_dataset,
    )
    from segzero_train.datasets import iter_reasonseg

    processor = AutoProcessor.from_pretrained(tiny_qwen3vl_dir)
    samples = list(iter_reasonseg(train_synthetic_dir, limit=3))
    ds = training_dataset(
        train_synthetic_dir, image_size=QWEN3VL_TRAIN_IMAGE_SIZE, processor=processor,
        max_prompt_length=1300, max_samples=3, completion=True, family=QWEN3VL_GROUNDING,
    )  # fmt: skip
    row = ds[0]
    gt = ground_truth_from_mask(samples[0].target, 1000)
    assert row["gt_boxes"] == [list(b) for b in gt.boxes]
    assert row["gt_points"] == [list(p) for p in gt.points]
    assert row["prompt"][0]["content"] == QWEN3VL_GROUNDING.build_prompt(samples[0].query)
    assert row["image"].size == (QWEN3VL_TRAIN_IMAGE_SIZE,) * 2
    body = row["completion"][0]["content"].split("<answer>")[1].split("</answer>")[0]
    assert json.loads(body) == [{"bbox_2d": list(gt.boxes[0]), "point_2d": list(gt.points[0])}]
    # the same mask in the 840 frame (Qwen2.5-VL) differs: the grid is not the frame's pixels
    assert ground_truth_from_mask(samples[0].target).boxes != gt.boxes

    # Seg-Zero's released form (840 frame) is mapped onto the grid
    hf = training_dataset(train_segzero_set_dir, image_size=256, family=QWEN3VL_GROUNDING)
    from segzero_train.data import load_segzero_set

    first = load_segzero_set(train_segzero_set_dir)[0]["solution"]
    want = rescale_ground_truth(parse_solution(first), 840, 1000)
    assert hf[0]["gt_boxes"] == [list(b) for b in want.boxes]
    assert hf[0]["gt_points"] == [list(p) for p in want.points]

    # the prompt budget counts what the processor makes: 16 px patches merged 2 x 2, and
    # Qwen3-VL's 65536-pixel floor scales a 128 px square up to 256 (64 tokens both)
    assert image_token_count(processor, 256) == 64 == image_token_count(processor, 128)
    assert image_token_count(processor, 832) == QWEN3VL_GROUNDING.image_tokens == 676
    for size in (128, 256):
        text = QWEN3VL_GROUNDING.build_prompt(samples[0].query)
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
        ]
        chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = processor(text=[chat], images=[Image.new("RGB", (size, size))])["input_ids"]
        n = prompt_token_count(processor, samples[0].query, size, QWEN3VL_GROUNDING)
        assert n == len(ids[0]), size


def _args(tmp_path: Path, *extra: str) -> list[str]:
    base = ["--model", "m", "--data", "d", "--output_dir", str(tmp_path), "--use_cpu", "true"]
    return [*base, *extra]


def test_image_size_follows_the_family(tmp_path: Path) -> None:
    script, _ = parse_args(_args(tmp_path, "--family", "qwen3vl-grounding"), world_size=1)
    assert script.image_size == 832 and script.model_family is QWEN3VL_GROUNDING
    script, _ = parse_args(_args(tmp_path), world_size=1)
    assert script.image_size == 840
    with pytest.raises(ValueError, match="multiple of 32 for the qwen3vl-grounding"):
        parse_args(_args(tmp_path, "--family", "qwen3vl-grounding", "--image_size", "840"))
    with pytest.raises(ValueError, match="multiple of 28 for the multi-object"):
        parse_args(_args(tmp_path, "--family", "multi-object", "--image_size", "832"))


def test_a_family_of_another_architecture_is_refused(
    tiny_qwen3vl_dir: Path, train_tiny_qwen_dir: Path, train_synthetic_dir: Path, tmp_path: Path
) -> None:
    from segzero_train.sft import train_sft

    check_family_architecture(tiny_qwen3vl_dir, QWEN3VL_GROUNDING)
    check_family_architecture(train_tiny_qwen_dir, MULTI_OBJECT)
    with pytest.raises(ValueError, match=r"Qwen3VLForConditionalGeneration.*--family qwen3vl"):
        check_family_architecture(tiny_qwen3vl_dir, MULTI_OBJECT)
    with pytest.raises(ValueError, match=r"qwen3vl-grounding.*--family .*multi-object"):
        check_family_architecture(train_tiny_qwen_dir, QWEN3VL_GROUNDING)
    out = tmp_path / "sft"
    with pytest.raises(ValueError, match="--family qwen3vl-grounding"):
        train_sft(tiny_qwen3vl_dir, train_synthetic_dir, out, steps=1, family="multi-object")
    assert not out.exists()


def test_grpo_trainer_scores_on_the_grid(
    tiny_qwen3vl_dir: Path, train_segzero_set_dir: Path, tmp_path: Path
) -> None:
    from segzero_train.grpo import build_trainer

    argv = [
        "--model", str(tiny_qwen3vl_dir), "--data", str(train_segzero_set_dir),
        "--output_dir", str(tmp_path), "--config", str(TINY_CPU_CONFIG),
        "--family", "qwen3vl-grounding", "--image_size", str(QWEN3VL_TRAIN_IMAGE_SIZE),
        "--max_samples", "2",
    ]  # fmt: skip
    script, cfg = parse_args(argv, world_size=1)
    trainer = build_trainer(script, cfg)
    assert type(trainer.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert {f.units_per_pixel for f in trainer.reward_funcs} == {U}
    row = trainer.train_dataset[0]
    assert all(0 <= v < 1000 for b in row["gt_boxes"] for v in b)
    assert row["image"].size == (QWEN3VL_TRAIN_IMAGE_SIZE,) * 2


def test_qwen3vl_sft_and_grpo_step(train_qwen3vl_sft_run, train_qwen3vl_grpo_run) -> None:
    from safetensors.numpy import load_file

    from segzero_train.grpo import TABLE_NAME, read_table

    line = [ln for ln in train_qwen3vl_sft_run.log.splitlines() if ln.startswith("sft done")]
    assert line, train_qwen3vl_sft_run.log[-2000:]
    print(line[0])
    first, last = (float(v) for v in line[0].split("loss ")[1].split(" in ")[0].split(" -> "))
    assert math.isfinite(first) and math.isfinite(last)
    config = json.loads((train_qwen3vl_sft_run.output / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]

    table = train_qwen3vl_grpo_run.output / TABLE_NAME
    assert table.is_file(), train_qwen3vl_grpo_run.log[-3000:]
    print(table.read_text())
    rows = read_table(table)
    assert [int(r["step"]) for r in rows] == [1]
    for r in rows:
        assert math.isfinite(r["loss"]) and 0.0 <= r["reward"] <= 5.0, r
    before = load_file(str(train_qwen3vl_sft_run.output / "model.safetensors"))
    after = load_file(str(train_qwen3vl_grpo_run.output / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = sum(int((before[k] != after[k]).sum()) for k in before)
    total = sum(v.size for v in before.values())
    print(f"weights changed: {changed}/{total} = {changed / total:.3f}")
    assert changed / total > 0.5
