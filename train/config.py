"""Command-line and config parsing for GRPO: Seg-Zero's recipe as TRL ``GRPOConfig`` defaults.

Follows TRL's own scripts (``trl/scripts/grpo.py``): a dataclass of script arguments
(:class:`SegZeroArguments`) next to ``trl.GRPOConfig``, both parsed by ``trl.TrlParser``:

1. the packaged recipe ``configs/grpo_segzero.yaml`` sets the defaults (Seg-Zero's veRL config,
   mapped onto TRL as train/README.md explains);
2. ``--config FILE`` (YAML) replaces any of them;
3. ``--<field> VALUE`` flags replace those. Values are typed by the dataclass field, so
   ``--save_strategy no`` stays the string ``"no"``.

YAML files are read with YAML 1.2 booleans (only ``true``/``false``): YAML 1.1 would turn
``save_strategy: no`` into ``False``. The optimizer step is derived as in Seg-Zero:
``prompts_per_step x num_generations`` completions = ``per_device_train_batch_size x
gradient_accumulation_steps x world size``; ``gradient_accumulation_steps`` is computed from it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REWARD_KINDS = ("segzero-v1", "multi-object")
"""The reward kinds, named as the model family whose reference training used each
(``segzero_edge.families``: ``ModelFamily.reward``)."""
OLD_REWARD_SPELLINGS = {"segzero": "segzero-v1", "multi_object": "multi-object"}
"""Reward names before they were spelled as the families: still accepted in ``--reward`` and
in recipe YAML files users keep (``reward: multi_object``), read as the new name."""
CONFIG_DIR = Path(__file__).parent / "configs"
RECIPE = CONFIG_DIR / "grpo_segzero.yaml"
"""The Seg-Zero recipe; always applied first."""


@dataclass
class SegZeroArguments:
    """Script arguments of ``python -m segzero_train.grpo``; every ``trl.GRPOConfig`` field is a
    flag as well (``--learning_rate``, ``--beta``, ``--save_strategy`` ...)."""

    model: str | None = field(
        default=None,
        metadata={"help": "Hugging Face Qwen2.5-VL or Qwen3-VL folder (policy and reference)"},
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "training data: a Seg-Zero set (save_to_disk folder, a downloaded hub "
            "snapshot, or the hub id, e.g. Ricky06662/refCOCOg_9k_840), a ReasonSeg folder "
            "(JPG + JSON) or a RefCOCO folder (instances.json, refs(umd).p, train2014/)"
        },
    )
    data_split: str = field(default="train", metadata={"help": "split of --data to train on"})
    max_samples: int | None = field(
        default=None, metadata={"help": "use the first N training samples (smoke runs)"}
    )
    prompts_per_step: int = field(
        default=16, metadata={"help": "prompts per optimizer step (Seg-Zero rollout_batch_size)"}
    )
    reward: str = field(
        default="segzero-v1",
        metadata={
            "help": "segzero-v1 (max 5) or multi-object (max 7); the old spellings segzero "
            "and multi_object are read as these"
        },
    )
    family: str | None = field(
        default=None,
        metadata={
            "help": "model family whose prompt the policy sees (segzero_edge.families); "
            "default: the one Seg-Zero trained with --reward (the family of that name)"
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "side of the square image shown to the model, a multiple of the family's "
            "patch_merge (28 for Qwen2.5-VL, 32 for Qwen3-VL); default: the family's resize_size "
            "(840, or 832 for qwen3vl-grounding)"
        },
    )
    max_prompt_length: int = field(
        default=1300,
        metadata={"help": "prompts longer than this (text + image tokens) are left out"},
    )
    resume: str | None = field(
        default=None,
        metadata={"help": "'latest' (newest checkpoint-N in --output_dir) or a checkpoint folder"},
    )

    def __post_init__(self) -> None:
        self.reward = OLD_REWARD_SPELLINGS.get(self.reward, self.reward)  # an old spelling

    @property
    def model_family(self) -> Any:
        """The :class:`segzero_edge.families.ModelFamily` of the prompts: ``family``, or the
        family whose reference training used ``reward``."""
        from segzero_edge.families import FAMILIES, get_family

        if self.family is not None:
            return get_family(self.family)
        return FAMILIES[self.reward]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad argument."""
        if not self.model:
            raise ValueError("--model is required (a Hugging Face Qwen2.5-VL or Qwen3-VL folder)")
        if not self.data:
            raise ValueError("--data is required (a Seg-Zero set, ReasonSeg or RefCOCO folder)")
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"--reward must be one of {REWARD_KINDS}, got {self.reward!r}")
        if self.family is not None:
            from segzero_edge.families import get_family

            get_family(self.family)  # ValueError naming the known families
        if self.prompts_per_step < 1:
            raise ValueError(f"--prompts_per_step must be >= 1, got {self.prompts_per_step}")
        if self.image_size is not None:
            fam = self.model_family
            pm = fam.patch_merge
            if self.image_size < pm or self.image_size % pm:
                raise ValueError(
                    f"--image_size must be a multiple of {pm} for the {fam.name} family "
                    f"(patch {pm // 2} x merge 2), got {self.image_size}"
                )
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"--max_samples must be >= 1, got {self.max_samples}")


def check_family_architecture(model_dir: Path, family: Any) -> None:
    """Raise ``ValueError`` when the checkpoint's ``architectures`` (``config.json``) is not the
    family's (a Qwen3-VL model with a Qwen2.5-VL family would be scored in the wrong
    coordinates)."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{model_dir}/config.json: cannot read it ({e})") from None
    archs = (config.get("architectures") or []) if isinstance(config, dict) else []
    if family.architecture not in archs:
        from segzero_edge.families import FAMILIES

        fits = sorted(f.name for f in FAMILIES.values() if f.architecture in archs)
        hint = "with a family of this architecture"
        if fits:
            hint = fits[0] + (f" (or {', '.join(fits[1:])})" if len(fits) > 1 else "")
        raise ValueError(
            f"{model_dir} is {archs or 'of no stated architecture'}, but the {family.name!r} "
            f"family is for {family.architecture}; pass --family {hint}"
        )


# ------------------------------------------------------------------------- YAML


def _yaml_loader() -> Any:
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false, never yes/no/on/off."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # PyYAML implements YAML 1.1 only; drop its bool resolver and re-add the 1.2 one.
    Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml12_bool = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", yaml12_bool, list("tTfF"))
    return Loader


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping (YAML 1.2 booleans); ``ValueError`` naming the file when it is not one."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_yaml_loader())  # a yaml.SafeLoader subclass
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse config file {path}: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------- parsing


def rank_from_env() -> int:
    """This process's rank as set by ``accelerate launch`` / torchrun (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def world_size_from_env() -> int:
    """Number of training processes as set by ``accelerate launch`` / torchrun (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation_steps(
    prompts_per_step: int, num_generations: int, per_device_train_batch_size: int, world_size: int
) -> int:
    """Micro-batches per optimizer step so that one step sees every completion of its prompts."""
    completions = prompts_per_step * num_generations
    per_micro = per_device_train_batch_size * world_size
    if completions % per_micro:
        raise ValueError(
            f"prompts_per_step x num_generations = {completions} completions is not divisible by "
            f"per_device_train_batch_size x world_size = {per_device_train_batch_size} x "
            f"{world_size}; change --per_device_train_batch_size"
        )
    return completions // per_micro


def make_parser() -> Any:
    """``trl.TrlParser`` over (:class:`SegZeroArguments`, ``trl.GRPOConfig``)."""
    from trl import GRPOConfig, TrlParser

    return TrlParser(
        (SegZeroArguments, GRPOConfig),
        prog="python -m segzero_train.grpo",
        allow_abbrev=False,  # --learning_rat must not silently set --learning_rate
        description=(
            "GRPO training of the Seg-Zero reasoner with TRL (Seg-Zero, arXiv 2503.06520). "
            "Defaults: Seg-Zero's recipe (configs/grpo_segzero.yaml); --config FILE (YAML) "
            "replaces any of them, --<field> VALUE flags replace both."
        ),
    )


def _apply_config(parser: Any, path: str | Path) -> None:
    values = load_yaml(path)
    remaining = parser.set_defaults_with_config(**values)
    unknown = remaining[::2]
    if unknown:
        raise ValueError(
            f"{path}: unknown setting(s) {[u.lstrip('-') for u in unknown]}; settings are "
            "SegZeroArguments or trl.GRPOConfig fields"
        )


def parse_args(argv: list[str] | None = None, world_size: int | None = None) -> tuple[Any, Any]:
    """``(SegZeroArguments, GRPOConfig)`` from the recipe, ``--config`` and flags.

    Raises ``ValueError`` naming an unknown setting, a missing file, or a batch that does not
    divide into ``prompts_per_step x num_generations`` completions; ``SystemExit`` (argparse) on
    an unknown flag.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    configs: list[str | Path] = [RECIPE]
    while "--config" in argv:
        k = argv.index("--config")
        if k + 1 >= len(argv):
            raise ValueError("--config needs a file")
        configs.append(argv.pop(k + 1))
        argv.pop(k)
    for path in configs:
        _apply_config(parser, path)
    # GRPOConfig derives generation_batch_size / steps_per_generation from
    # gradient_accumulation_steps when it is built: settle that first, on the plain namespace.
    ns, _ = parser.parse_known_args(argv)
    SegZeroArguments(**{f.name: getattr(ns, f.name) for f in fields(SegZeroArguments)}).validate()
    ga = gradient_accumulation_steps(
        ns.prompts_per_step,
        ns.num_generations,
        ns.per_device_train_batch_size,
        world_size or world_size_from_env(),
    )
    explicit = any(a.split("=")[0] == "--gradient_accumulation_steps" for a in argv)
    if explicit and ns.gradient_accumulation_steps != ga:
        raise ValueError(
            f"--gradient_accumulation_steps {ns.gradient_accumulation_steps} does not give "
            f"{ns.prompts_per_step} prompts x {ns.num_generations} rollouts per step (needs "
            f"{ga}); leave it out, it is derived from --prompts_per_step"
        )
    parser.set_defaults(gradient_accumulation_steps=ga)
    script, cfg = parser.parse_args_and_config(argv)
    if script.image_size is None:
        script.image_size = script.model_family.resize_size
    if not cfg.output_dir:
        raise ValueError("--output_dir is required")
    # The reward functions read the ground-truth columns: TRL must keep them.
    cfg.remove_unused_columns = False
    if cfg.vllm_max_model_length is None:
        cfg.vllm_max_model_length = script.max_prompt_length + cfg.max_completion_length
    return script, cfg


__all__ = [
    "RECIPE",
    "REWARD_KINDS",
    "SegZeroArguments",
    "check_family_architecture",
    "gradient_accumulation_steps",
    "load_yaml",
    "make_parser",
    "parse_args",
    "rank_from_env",
    "world_size_from_env",
]
