"""GRPO settings: Seg-Zero's training recipe and its mapping onto TRL's GRPOConfig.

``GRPOSettings`` holds the recipe in Seg-Zero's own terms (prompts per step, rollouts per prompt,
...); :func:`to_grpo_config` turns it into a ``trl.GRPOConfig`` for a given number of processes.
Settings load from a YAML/JSON file and ``key=value`` overrides; unknown keys are refused, and
any other ``GRPOConfig`` field can be passed through the ``trl`` mapping.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REWARD_KINDS = ("segzero", "multi_object")
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "grpo_segzero.yaml"


@dataclass
class GRPOSettings:
    """The Seg-Zero GRPO recipe; every field maps onto TRL (see train/README.md)."""

    # rollouts and batch
    prompts_per_step: int = 16
    num_generations: int = 8
    per_device_train_batch_size: int = 2
    temperature: float = 1.0
    max_prompt_length: int = 1300
    max_completion_length: int = 1300
    # optimisation
    learning_rate: float = 1e-6
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    epsilon: float = 0.2
    num_iterations: int = 1
    beta: float | None = None  # None: 5e-3 (segzero) or 1e-2 (multi_object)
    scale_rewards: str = "group"
    loss_type: str = "dapo"
    # rewards and data
    reward: str = "segzero"
    image_size: int = 840
    # schedule, precision, logging
    num_train_epochs: float = 1.0
    max_steps: int = -1
    bf16: bool = True
    gradient_checkpointing: bool = True
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = 3
    seed: int = 42
    report_to: str = "none"
    # rollouts through vLLM
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    # any other trl.GRPOConfig field, passed through unchanged
    trl: dict[str, Any] = field(default_factory=dict)

    @property
    def kl_beta(self) -> float:
        """KL coefficient: explicit ``beta`` or the Seg-Zero default for the reward kind."""
        if self.beta is not None:
            return self.beta
        return 1e-2 if self.reward == "multi_object" else 5e-3

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"reward must be one of {REWARD_KINDS}, got {self.reward!r}")
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 (GRPO groups), got {self.num_generations}"
            )
        for name in ("prompts_per_step", "per_device_train_batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % 28:
            raise ValueError(
                f"image_size must be a multiple of 28 (patch 14 x merge 2), got {self.image_size}"
            )
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be group/batch/none, got {self.scale_rewards!r}")

    def gradient_accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step: one step sees prompts_per_step x num_generations."""
        completions = self.prompts_per_step * self.num_generations
        per_micro = self.per_device_train_batch_size * world_size
        if completions % per_micro:
            raise ValueError(
                f"prompts_per_step x num_generations = {completions} completions is not divisible "
                f"by "
                f"per_device_train_batch_size x world_size = {self.per_device_train_batch_size} x "
                f"{world_size}; change per_device_train_batch_size"
            )
        return completions // per_micro


def world_size_from_env() -> int:
    """Number of training processes as set by ``accelerate launch`` / torchrun (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _parse_value(text: str) -> Any:
    """YAML value; also reads ``1e-5`` as a float (YAML 1.1 wants ``1.0e-5``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_settings(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> GRPOSettings:
    """Settings from a YAML/JSON file (default: the packaged Seg-Zero config) plus ``key=value``."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"cannot parse config file {path}: {e}") from e
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(GRPOSettings)}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override must look like key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key.startswith("trl."):
            raw.setdefault("trl", {})[key[4:]] = _parse_value(value)
        else:
            raw[key] = _parse_value(value)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown}; known: {sorted(known)} (or trl.<GRPOConfig field>)"
        )
    settings = GRPOSettings(**raw)
    settings.validate()
    return settings


def to_grpo_config(
    settings: GRPOSettings, output_dir: str | Path, world_size: int | None = None
) -> Any:
    """The ``trl.GRPOConfig`` that runs ``settings`` on ``world_size`` processes."""
    from trl import GRPOConfig

    settings.validate()
    world_size = world_size or world_size_from_env()
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        # one optimizer step = prompts_per_step prompts x num_generations rollouts, on-policy
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps(world_size),
        num_generations=settings.num_generations,
        num_iterations=settings.num_iterations,
        temperature=settings.temperature,
        top_p=1.0,
        top_k=0,
        max_completion_length=settings.max_completion_length,
        # optimiser: AdamW, constant LR, grad clip
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        # PPO clip, KL(k3) in the loss, group-normalised advantages, token-level mean
        epsilon=settings.epsilon,
        beta=settings.kl_beta,
        use_bias_correction_kl=False,
        scale_rewards=settings.scale_rewards,
        multi_objective_aggregation="sum_then_normalize",
        loss_type=settings.loss_type,
        mask_truncated_completions=False,
        # run control
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        report_to=settings.report_to,
        remove_unused_columns=False,
        # vLLM rollouts
        use_vllm=settings.use_vllm,
        vllm_mode=settings.vllm_mode,
        vllm_server_base_url=settings.vllm_server_base_url,
        vllm_gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=settings.vllm_tensor_parallel_size,
        vllm_max_model_length=settings.max_prompt_length + settings.max_completion_length,
    )
    kwargs.update(settings.trl)
    return GRPOConfig(**kwargs)
