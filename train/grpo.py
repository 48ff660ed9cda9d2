"""GRPO training of the Seg-Zero reasoner (Qwen2.5-VL or Qwen3-VL) with TRL's ``GRPOTrainer``.

    python -m segzero_train.grpo --model DIR --data DATA --output_dir DIR [--config FILE]
        [--resume latest|CHECKPOINT] [--<GRPOConfig field> VALUE ...]

Defaults are Seg-Zero's recipe (``configs/grpo_segzero.yaml``, parsed by
:mod:`segzero_train.config`). ``--data`` is any source of :mod:`segzero_train.data` (Seg-Zero's
released sets, ReasonSeg or RefCOCO folders). Each prompt is the Seg-Zero user turn (image
squared to ``image_size``, then the model family's prompt, ``SegZeroArguments.model_family``:
Seg-Zero v1's for ``--reward segzero-v1``, the multi-object one for ``--reward multi-object``, or
``--family``); the ground-truth
boxes/points travel as dataset columns to the reward functions. Answers are always scored in
the frame the runtime maps back from, whatever ``image_size`` the model is shown (smaller only to
keep CPU runs cheap): the 840 x 840 pixel frame for the Qwen2.5-VL families; for Qwen3-VL
(``--family qwen3vl-grounding``) the 0-1000 grid, the ground truth mapped into it, with the
reward's pixel thresholds scaled by ``ModelFamily.units_per_pixel`` (1000 / 832) so they keep
their meaning in pixels of the model's 832 frame. The model's architecture must be the family's
(``ModelFamily.architecture``). One TRL reward function per reward term,
so TRL logs each. After every optimizer step one row (step, mean total reward, mean of each
term, loss, KL, entropy) is added to ``reward_table.tsv`` in the output folder and printed.

Precision: the policy is loaded in float32 (master weights) and ``bf16: true`` computes under
bf16 autocast; DeepSpeed ZeRO keeps its own fp32 master copy and bf16 weights. Without
DeepSpeed/FSDP the frozen reference model is cast to bf16, as veRL keeps it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_NAME = "reward_table.tsv"
FORMAT_TERMS = ("think_format", "answer_format", "item_format", "non_repeat")
"""Reward terms that score the output form; the others score localisation accuracy."""


# --------------------------------------------------------------------------- rewards


def completion_text(completion: Any) -> str:
    """The generated text of one TRL completion (plain string or a list of chat messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(b.get("text", "") for b in content if isinstance(b, dict))
        return "".join(parts)
    return "" if completion is None else str(completion)


def _score_fn(kind: str) -> Callable[[str, Any], dict[str, float]]:
    from . import rewards

    if kind == "segzero-v1":
        return rewards.segzero_rewards
    if kind == "multi-object":
        return rewards.multi_object_rewards
    raise ValueError(f"unknown reward kind {kind!r} (segzero-v1 or multi-object)")


@lru_cache(maxsize=8192)
def _scores(
    kind: str, text: str, boxes: tuple, points: tuple, units_per_pixel: float = 1.0
) -> dict[str, float]:
    from .rewards import GroundTruth

    gt = GroundTruth(boxes=[list(b) for b in boxes], points=[list(p) for p in points])
    return dict(_score_fn(kind)(text, gt, units_per_pixel=units_per_pixel))


def _as_tuple(rows: Any) -> tuple:
    return tuple(tuple(int(v) for v in row) for row in rows)


def reward_terms(kind: str) -> list[str]:
    """Names of the reward terms (without ``total``) of a reward kind, in their order."""
    from .rewards import MULTI_OBJECT_TERMS, SEGZERO_TERMS

    _score_fn(kind)  # validates kind
    return list(SEGZERO_TERMS if kind == "segzero-v1" else MULTI_OBJECT_TERMS)


class RewardTerm:
    """One reward term as a TRL reward function: ``f(prompts, completions, **columns) -> list``;
    ``units_per_pixel`` scales the reward's pixel thresholds into the answer's units
    (:attr:`segzero_edge.families.ModelFamily.units_per_pixel`)."""

    def __init__(self, kind: str, term: str, units_per_pixel: float = 1.0) -> None:
        self.kind = kind
        self.term = term
        self.units_per_pixel = float(units_per_pixel)
        self.__name__ = term

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        gt_boxes: Sequence[Any],
        gt_points: Sequence[Any],
        **_: Any,
    ) -> list[float]:
        out = []
        for completion, boxes, points in zip(completions, gt_boxes, gt_points, strict=True):
            scores = _scores(
                self.kind,
                completion_text(completion),
                _as_tuple(boxes),
                _as_tuple(points),
                self.units_per_pixel,
            )
            out.append(float(scores[self.term]))
        return out

    def __repr__(self) -> str:
        return f"RewardTerm({self.kind!r}, {self.term!r}, {self.units_per_pixel!r})"


def reward_funcs(kind: str, units_per_pixel: float = 1.0) -> list[RewardTerm]:
    """One TRL reward function per term; TRL sums them (weights 1) into the Seg-Zero total.
    ``ValueError`` for an unknown kind or a ``units_per_pixel`` that is not a finite number > 0."""
    from .rewards import check_units_per_pixel

    u = check_units_per_pixel(units_per_pixel)
    return [RewardTerm(kind, term, u) for term in reward_terms(kind)]


def is_format_term(term: str) -> bool:
    """True for terms that score the output format; the others score localisation accuracy."""
    return term in FORMAT_TERMS


# --------------------------------------------------------------------------- logging


def table_columns(terms: list[str]) -> list[str]:
    """Columns of ``reward_table.tsv`` for a list of reward terms."""
    return ["step", "loss", "reward", *terms, "accuracy_sum", "kl", "entropy", "completion_len"]


def _reward_table_callback(output_dir: Path, terms: list[str], rows: list[dict[str, float]]) -> Any:
    from transformers import TrainerCallback

    class RewardTable(TrainerCallback):
        """Collect one row per optimizer step from TRL's logs; write and print the table."""

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = list(rows)
            self.columns = table_columns(terms)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "reward" not in logs:
                return
            row = {
                "step": float(state.global_step),
                "loss": float(logs.get("loss", math.nan)),
                "reward": float(logs["reward"]),
            }
            for t in terms:
                row[t] = float(logs.get(f"rewards/{t}/mean", math.nan))
            row["accuracy_sum"] = sum(row[t] for t in terms if not is_format_term(t))
            row["kl"] = float(logs.get("kl", math.nan))
            row["entropy"] = float(logs.get("entropy", math.nan))
            row["completion_len"] = float(logs.get("completions/mean_length", math.nan))
            self.rows.append(row)
            if state.is_world_process_zero:
                if len(self.rows) == 1:
                    print("\t".join(self.columns), flush=True)
                print(format_row(row, self.columns), flush=True)
                write_table(output_dir / TABLE_NAME, self.rows, self.columns)

    return RewardTable()


def format_row(row: dict[str, float], columns: list[str]) -> str:
    """One tab-separated table line (step as an integer)."""
    return "\t".join(str(int(row[c])) if c == "step" else f"{row[c]:.4f}" for c in columns)


def write_table(path: Path, rows: list[dict[str, float]], columns: list[str]) -> None:
    """Write the reward table atomically (temp file, then rename)."""
    from segzero_edge.fileio import atomic_path

    lines = ["\t".join(columns), *(format_row(r, columns) for r in rows)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_table(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``reward_table.tsv`` as dicts of floats."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, map(float, line.split("\t")), strict=True)) for line in lines[1:]]


# --------------------------------------------------------------------------- training


def resolve_resume(resume: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint folder to resume from: ``None``, ``"latest"`` or a path.

    ``"latest"`` is the newest ``checkpoint-N`` in ``output_dir``
    (``transformers.trainer_utils.get_last_checkpoint``). Raises ``ValueError`` when there is
    none or the path is not a folder.
    """
    if not resume:
        return None
    if resume == "latest":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"--resume latest: no checkpoint-N folder in {output_dir}")
        return str(last)
    if not Path(resume).is_dir():
        raise ValueError(f"--resume: checkpoint folder not found: {resume}")
    return str(resume)


def _checkpoint_step(checkpoint: str) -> int:
    import json

    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text()).get("global_step", 0))
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def build_trainer(script: Any, cfg: Any, rows: list[dict[str, float]] | None = None) -> Any:
    """The ``GRPOTrainer`` for parsed arguments (:func:`segzero_train.config.parse_args`).

    Raises ``ValueError`` for a model folder without ``config.json`` or unusable data.
    """
    import torch
    from transformers import AutoProcessor
    from trl import GRPOTrainer

    from .config import check_family_architecture
    from .data import training_dataset

    script.validate()
    model_dir = Path(script.model)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"not a Hugging Face model folder (no config.json): {model_dir}")
    family = script.model_family
    check_family_architecture(model_dir, family)
    # fp32 master weights: AdamW on bf16 weights rounds most 1e-6-sized updates away.
    cfg.model_init_kwargs = {"dtype": "float32", **(cfg.model_init_kwargs or {})}
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = training_dataset(
        script.data,
        image_size=script.image_size,
        split=script.data_split,
        per_instance=script.reward == "multi-object",
        processor=processor,
        max_prompt_length=script.max_prompt_length,
        max_samples=script.max_samples,
        family=family,
    )
    terms = reward_terms(script.reward)
    table = _reward_table_callback(Path(cfg.output_dir), terms, rows or [])
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs(script.reward, family.units_per_pixel),
        args=cfg,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[table],
    )
    trainer.reward_table = table
    distributed = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if cfg.bf16 and trainer.ref_model is not None and not distributed:
        trainer.ref_model.to(torch.bfloat16)  # frozen: bf16 like veRL's reference worker
    return trainer


def train_grpo(script: Any, cfg: Any) -> list[dict[str, float]]:
    """Run GRPO; return the per-step reward table rows (also ``output_dir/reward_table.tsv``)."""
    resume = resolve_resume(script.resume or cfg.resume_from_checkpoint, cfg.output_dir)
    rows: list[dict[str, float]] = []
    table_path = Path(cfg.output_dir) / TABLE_NAME
    if resume is not None and table_path.is_file():
        step = _checkpoint_step(resume)
        rows = [r for r in read_table(table_path) if r["step"] <= step]
    trainer = build_trainer(script, cfg, rows)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(cfg.output_dir)
    return trainer.reward_table.rows


def main(argv: list[str] | None = None) -> int:
    from .config import parse_args

    try:
        script, cfg = parse_args(argv)
        rows = train_grpo(script, cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: {len(rows)} step(s); table in {Path(cfg.output_dir) / TABLE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
