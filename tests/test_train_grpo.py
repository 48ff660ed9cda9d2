"""GRPO on TRL: the Seg-Zero recipe as parsed GRPOConfig, reward adapters, a CPU SFT + GRPO run
with a resume, fp32 master weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from segzero_train.config import load_yaml, parse_args
from segzero_train.grpo import (
    TABLE_NAME,
    RewardTerm,
    completion_text,
    read_table,
    resolve_resume,
    reward_funcs,
    reward_terms,
)
from tests.fixtures.train_model import GRPO_STEPS, TINY_CPU_CONFIG, TRAIN_IMAGE_SIZE

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def _args(tmp_path: Path, *extra: str) -> list[str]:
    base = ["--model", "m", "--data", "d", "--output_dir", str(tmp_path), "--use_cpu", "true"]
    return [*base, *extra]


def test_default_arguments_are_the_segzero_recipe(tmp_path: Path) -> None:
    script, cfg = parse_args(_args(tmp_path), world_size=1)
    assert script.prompts_per_step == 16 and script.reward == "segzero-v1"
    assert script.image_size == 840 and script.max_prompt_length == 1300
    assert cfg.num_generations == 8
    assert cfg.temperature == 1.0 and cfg.top_p == 1.0 and cfg.top_k == 0
    # 16 prompts x 8 rollouts = 128 completions per optimizer step, one sequence per micro-batch
    assert cfg.per_device_train_batch_size == 1 and cfg.gradient_accumulation_steps == 128
    assert cfg.generation_batch_size == 128 and cfg.steps_per_generation == 128
    assert cfg.num_iterations == 1
    assert cfg.learning_rate == 1e-6 and str(cfg.lr_scheduler_type.value) == "constant"
    assert cfg.weight_decay == 1e-2 and str(cfg.optim.value) == "adamw_torch"
    assert cfg.max_grad_norm == 1.0 and cfg.epsilon == 0.2
    assert cfg.beta == 5e-3 and cfg.use_bias_correction_kl is False
    assert cfg.scale_rewards == "group" and cfg.loss_type == "grpo"
    assert cfg.entropy_coef == 1e-3 and cfg.use_adaptive_entropy is False
    assert cfg.use_vllm is False and cfg.vllm_importance_sampling_correction is False
    assert cfg.max_completion_length == 1300 and cfg.mask_truncated_completions is False
    assert cfg.vllm_max_model_length == 2600
    assert cfg.bf16 is True and cfg.remove_unused_columns is False


def test_world_sizes_and_the_multi_object_variant(tmp_path: Path) -> None:
    _, cfg = parse_args(_args(tmp_path), world_size=8)
    assert cfg.gradient_accumulation_steps == 16  # x 8 processes x 1 sequence = 128
    with pytest.raises(ValueError, match="not divisible"):
        parse_args(_args(tmp_path), world_size=3)
    multi = str(CONFIGS / "grpo_multi_object.yaml")
    script, cfg = parse_args(_args(tmp_path, "--config", multi), world_size=8)
    assert script.reward == "multi-object" and cfg.beta == 1e-2
    assert cfg.loss_type == "bnpo" and cfg.max_completion_length == 2000
    assert cfg.per_device_train_batch_size == 16 and cfg.gradient_accumulation_steps == 1
    assert cfg.entropy_coef == 1e-3  # still the recipe's
    # the reward's old spelling (recipes users keep) is read as the family's name
    old, _ = parse_args(_args(tmp_path, "--reward", "multi_object"), world_size=8)
    assert old.reward == "multi-object" and old.model_family.name == "multi-object"
    with pytest.raises(ValueError, match="--reward must be one of"):
        parse_args(_args(tmp_path, "--reward", "multi object"), world_size=8)


def test_flags_and_yaml_keep_strings_as_strings(tmp_path: Path) -> None:
    _, cfg = parse_args(_args(tmp_path, "--save_strategy", "no", "--learning_rate", "1e-5"))
    assert str(cfg.save_strategy.value) == "no" and cfg.learning_rate == 1e-5
    user = tmp_path / "user.yaml"
    user.write_text("save_strategy: no\nlearning_rate: 1e-5\nlogging_steps: 3\n")
    assert load_yaml(user)["save_strategy"] == "no"  # YAML 1.1 would say False
    _, cfg = parse_args(_args(tmp_path, "--config", str(user), "--logging_steps", "5"))
    assert str(cfg.save_strategy.value) == "no" and cfg.learning_rate == 1e-5
    assert cfg.logging_steps == 5  # the flag wins over the file


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_args(_args(tmp_path, "--config", str(bad)))
    with pytest.raises(ValueError, match="learning_rat"):  # no prefix matching
        parse_args(_args(tmp_path, "--learning_rat", "1"))
    with pytest.raises(ValueError, match="image_size"):
        parse_args(_args(tmp_path, "--image_size", "100"))
    with pytest.raises(ValueError, match="not found"):
        parse_args(_args(tmp_path, "--config", str(tmp_path / "missing.yaml")))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        parse_args(_args(tmp_path, "--gradient_accumulation_steps", "4"), world_size=1)
    with pytest.raises(ValueError, match="--model"):
        parse_args(["--data", "d", "--output_dir", str(tmp_path)])


def test_resume_finds_the_latest_checkpoint(tmp_path: Path) -> None:
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(ValueError, match="no checkpoint"):
        resolve_resume("latest", tmp_path)
    for step in (2, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert resolve_resume("latest", tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(
        tmp_path / "checkpoint-2"
    )
    with pytest.raises(ValueError, match="not found"):
        resolve_resume(str(tmp_path / "checkpoint-3"), tmp_path)


def test_reward_adapters_wrap_the_rewards() -> None:
    from segzero_edge.answer import AnswerObject, format_list_answer
    from segzero_train.rewards import GroundTruth, segzero_rewards

    boxes, points = [[100, 120, 300, 330]], [[200, 220]]
    good = format_list_answer([AnswerObject(box=(100, 120, 300, 330), points=((200, 220),))], "ok")
    bad = "<think>no idea"
    funcs = reward_funcs("segzero-v1")
    assert [f.__name__ for f in funcs] == reward_terms("segzero-v1")
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


def test_sft_warmup_lowers_the_loss(train_sft_run) -> None:
    line = [ln for ln in train_sft_run.log.splitlines() if ln.startswith("sft done")]
    assert line, train_sft_run.log[-2000:]
    print(line[0])
    first, last = (float(v) for v in line[0].split("loss ")[1].split(" in ")[0].split(" -> "))
    assert math.isfinite(first) and math.isfinite(last)
    assert last < 0.7 * first, line[0]


def test_grpo_cpu_run_resumes_and_changes_the_weights(train_sft_run, train_grpo_run) -> None:
    from safetensors.numpy import load_file

    table = train_grpo_run.output / TABLE_NAME
    assert table.is_file(), train_grpo_run.log[-3000:]
    print(table.read_text())
    assert "=== resumed ===" in train_grpo_run.log
    assert (
        f"checkpoint-{GRPO_STEPS - 1}" in train_grpo_run.log
        or (train_grpo_run.output / f"checkpoint-{GRPO_STEPS - 1}").is_dir()
    )
    rows = read_table(table)
    # the resumed run continues the table: one row per step, none repeated
    assert [int(r["step"]) for r in rows] == list(range(1, GRPO_STEPS + 1))
    for r in rows:
        assert math.isfinite(r["loss"]) and math.isfinite(r["reward"]), r
        assert all(math.isfinite(v) for k, v in r.items() if k not in ("kl", "entropy")), r
        assert 0.0 <= r["reward"] <= 5.0, r
    before = load_file(str(train_sft_run.output / "model.safetensors"))
    after = load_file(str(train_grpo_run.output / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = sum(int((before[k] != after[k]).sum()) for k in before)
    total = sum(v.size for v in before.values())
    print(f"weights changed: {changed}/{total} = {changed / total:.3f}")
    assert changed / total > 0.5  # fp32 master weights: AdamW moves (nearly) every weight


def test_bf16_keeps_fp32_master_weights(train_tiny_qwen_dir, train_synthetic_dir, tmp_path) -> None:
    import torch

    from segzero_train.grpo import build_trainer

    argv = [
        "--model", str(train_tiny_qwen_dir), "--data", str(train_synthetic_dir),
        "--output_dir", str(tmp_path), "--config", str(TINY_CPU_CONFIG),
        "--image_size", str(TRAIN_IMAGE_SIZE), "--bf16", "true", "--max_samples", "2",
    ]  # fmt: skip
    script, cfg = parse_args(argv, world_size=1)
    trainer = build_trainer(script, cfg)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.bfloat16}
    assert trainer.args.bf16 and trainer.entropy_coef == 1e-3


def test_dataset_rows_carry_prompt_image_and_ground_truth(
    train_tiny_qwen_dir, train_synthetic_dir
) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    from segzero_edge.families import MULTI_OBJECT
    from segzero_train.data import prompt_token_count, training_dataset
    from segzero_train.datasets import iter_reasonseg
    from segzero_train.gt import ground_truth_from_mask

    processor = AutoProcessor.from_pretrained(train_tiny_qwen_dir)
    samples = list(iter_reasonseg(train_synthetic_dir, limit=3))
    ds = training_dataset(
        train_synthetic_dir, image_size=112, processor=processor, max_prompt_length=1300,
        max_samples=3,
    )  # fmt: skip
    row = ds[0]
    assert row["prompt"] == [
        {"role": "user", "content": MULTI_OBJECT.build_prompt(samples[0].query)}
    ]
    assert row["image"].size == (112, 112) and row["image"].mode == "RGB"
    gt = ground_truth_from_mask(samples[0].target)
    assert row["gt_boxes"] == [list(b) for b in gt.boxes]
    assert row["gt_points"] == [list(p) for p in gt.points]
    # the prompt budget check counts exactly what the processor produces (840 -> 900 image tokens)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": MULTI_OBJECT.build_prompt(samples[0].query)},
            ],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], images=[Image.new("RGB", (840, 840))])["input_ids"]
    assert prompt_token_count(processor, samples[0].query, 840) == len(ids[0])
    with pytest.raises(ValueError, match="no training prompts"):
        training_dataset(
            train_synthetic_dir, image_size=112, processor=processor, max_prompt_length=10
        )
