"""One GRPO step of the tiny Qwen2.5-VL on CUDA with bf16 compute (``pytest -m gpu``).

What the datacenter run does, at the smallest size: fp32 master weights on the GPU, the policy's
forward under bf16 autocast (``bf16: true``), the frozen reference model in bf16, a finite loss
and reward, and AdamW moving the fp32 weights. ``scripts/gpu_check.sh`` runs it on a GPU host.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from segzero_train.config import parse_args
from tests.fixtures.train_model import TINY_CPU_CONFIG, TRAIN_IMAGE_SIZE

pytestmark = pytest.mark.gpu


def test_one_grpo_step_in_bf16_on_cuda(
    train_tiny_qwen_dir: Path, train_synthetic_dir: Path, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support")
    for module in ("trl", "datasets"):  # a GPU host may lack them: carried as wheels
        pytest.importorskip(
            module, reason=f"{module} not installed (scripts/gpu_check.sh --prepare)"
        )
    from segzero_train.grpo import build_trainer

    argv = [
        "--model", str(train_tiny_qwen_dir), "--data", str(train_synthetic_dir),
        "--output_dir", str(tmp_path), "--config", str(TINY_CPU_CONFIG),
        "--image_size", str(TRAIN_IMAGE_SIZE), "--use_cpu", "false", "--bf16", "true",
        "--max_steps", "1", "--max_samples", "4", "--disable_tqdm", "true",
    ]  # fmt: skip
    script, cfg = parse_args(argv, world_size=1)
    trainer = build_trainer(script, cfg)
    model = trainer.model
    assert next(model.parameters()).device.type == "cuda"
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # master weights
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.bfloat16}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    seen: list[tuple[bool, Any, Any]] = []
    # the first decoder layer's output dtype shows the compute precision
    layers = model.model.language_model.layers
    handle = layers[0].register_forward_hook(
        lambda m, a, out: seen.append(
            (
                torch.is_autocast_enabled("cuda"),
                torch.get_autocast_dtype("cuda"),
                (out[0] if isinstance(out, tuple) else out).dtype,
            )
        )
    )
    try:
        trainer.train()
    finally:
        handle.remove()
    rows = trainer.reward_table.rows
    print(f"GRPO step on {torch.cuda.get_device_name(0)}: {rows}")
    assert seen, "the policy never ran a forward pass"
    # the training forward passes (loss) run under bf16 autocast in bf16
    assert any(on and dt == torch.bfloat16 and out == torch.bfloat16 for on, dt, out in seen), seen
    assert [int(r["step"]) for r in rows] == [1]
    assert math.isfinite(rows[0]["loss"]) and math.isfinite(rows[0]["reward"]), rows
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    after = model.state_dict()
    changed = sum(int((before[k] != after[k]).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    print(f"weights changed: {changed}/{total} = {changed / total:.3f}")
    assert changed / total > 0.5  # fp32 master weights: AdamW moves (nearly) every weight
