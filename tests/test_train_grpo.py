"""GRPO on TRL: recipe -> GRPOConfig mapping, reward adapters, and a CPU SFT + GRPO run."""

from __future__ import annotations

import math

import pytest

from segzero_train.config import GRPOSettings, load_settings, to_grpo_config
from segzero_train.grpo import (
    TABLE_NAME,
    RewardTerm,
    completion_text,
    read_table,
    reward_funcs,
    reward_terms,
)
from tests.fixtures.train_model import GRPO_STEPS


def test_default_settings_are_the_segzero_recipe(tmp_path):
    s = load_settings(None, ["trl.use_cpu=true"])
    cfg = to_grpo_config(s, tmp_path, world_size=1)
    assert cfg.num_generations == 8
    assert cfg.temperature == 1.0 and cfg.top_p == 1.0 and cfg.top_k == 0
    # 16 prompts x 8 rollouts = 128 completions per optimizer step, one generation per step
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 128
    assert (
        cfg.generation_batch_size == 128
        and cfg.steps_per_generation == cfg.gradient_accumulation_steps
    )
    assert cfg.num_iterations == 1
    assert cfg.learning_rate == 1e-6 and str(cfg.lr_scheduler_type.value) == "constant"
    assert cfg.weight_decay == 1e-2 and "adamw" in str(cfg.optim.value)
    assert cfg.max_grad_norm == 1.0 and cfg.epsilon == 0.2
    assert cfg.beta == 5e-3 and cfg.use_bias_correction_kl is False
    assert cfg.scale_rewards == "group" and cfg.loss_type == "dapo"
    assert cfg.max_completion_length == 1300 and s.max_prompt_length == 1300


def test_multi_object_and_world_sizes():
    multi = load_settings(None, ["reward=multi_object"])
    assert multi.kl_beta == 1e-2
    s = GRPOSettings()
    assert s.gradient_accumulation_steps(1) == 64
    assert s.gradient_accumulation_steps(8) == 8
    with pytest.raises(ValueError, match="not divisible"):
        s.gradient_accumulation_steps(3)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(None, ["learning_rat=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_settings(None, ["max_steps"])
    with pytest.raises(ValueError, match="image_size"):
        load_settings(None, ["image_size=100"])
    with pytest.raises(ValueError, match="not found"):
        load_settings(tmp_path / "missing.yaml")


def test_reward_adapters_wrap_the_rewards():
    from segzero_edge.answer import format_answer
    from segzero_edge.types import ObjectPrompt
    from segzero_train.rewards import GroundTruth, segzero_rewards

    boxes, points = [[100, 120, 300, 330]], [[200, 220]]
    good = format_answer([ObjectPrompt(box=(100, 120, 300, 330), points=((200, 220),))], "ok")
    bad = "<think>no idea"
    funcs = reward_funcs("segzero")
    assert [f.__name__ for f in funcs] == reward_terms("segzero")
    expected = segzero_rewards(good, GroundTruth(boxes=boxes, points=points))
    as_chat = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    total = [0.0, 0.0]
    for f in funcs:
        assert isinstance(f, RewardTerm)
        values = f(
            prompts=[None, None], completions=as_chat, gt_boxes=[boxes] * 2, gt_points=[points] * 2
        )
        assert values[0] == expected[f.term], f.term
        total = [t + v for t, v in zip(total, values, strict=True)]
    assert total[0] == pytest.approx(expected["total"]) and total[0] == 5.0
    assert total[1] < total[0]
    assert (
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]) == "a"
    )


def test_sft_warmup_lowers_the_loss(train_sft_run):
    line = [ln for ln in train_sft_run.log.splitlines() if ln.startswith("sft done")]
    assert line, train_sft_run.log[-2000:]
    print(line[0])
    first, last = (float(v) for v in line[0].split("loss ")[1].split(" in ")[0].split(" -> "))
    assert math.isfinite(first) and math.isfinite(last)
    assert last < 0.7 * first, line[0]


def test_grpo_cpu_run_logs_one_finite_row_per_step(train_grpo_run):
    table = train_grpo_run.output / TABLE_NAME
    assert table.is_file(), train_grpo_run.log[-3000:]
    print(table.read_text())
    rows = read_table(table)
    assert [int(r["step"]) for r in rows] == list(range(1, GRPO_STEPS + 1))
    for r in rows:
        assert all(math.isfinite(v) for k, v in r.items() if k != "kl"), r
        assert 0.0 <= r["reward"] <= 5.0, r
    assert (train_grpo_run.output / "model.safetensors").is_file()


def test_dataset_rows_carry_prompt_image_and_ground_truth(train_tiny_qwen_dir, train_synthetic_dir):
    from PIL import Image
    from transformers import AutoProcessor

    from segzero_edge.prompt import build_prompt
    from segzero_train.grpo import build_dataset, load_samples, prompt_token_count

    processor = AutoProcessor.from_pretrained(train_tiny_qwen_dir)
    samples = load_samples(train_synthetic_dir)[:3]
    ds = build_dataset(samples, 112, processor, max_prompt_length=1300)
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": build_prompt(samples[0].query)}]
    assert row["image"].size == (112, 112)
    assert row["gt_boxes"] == samples[0].boxes and row["gt_points"] == samples[0].points
    # the prompt budget check counts exactly what the processor produces (840 -> 900 image tokens)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": build_prompt(samples[0].query)},
            ],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], images=[Image.new("RGB", (840, 840))])["input_ids"]
    assert prompt_token_count(processor, samples[0].query, 840) == len(ids[0])
    with pytest.raises(ValueError, match="no training prompts"):
        build_dataset(samples, 112, processor, max_prompt_length=10)
