"""GRPO training of the Seg-Zero reasoner (Qwen2.5-VL) with TRL's ``GRPOTrainer``.

    python -m segzero_train.grpo --model DIR --data DIR --output DIR [--config FILE] [key=value ...]

``--data`` is a ReasonSeg-format folder (JPG + JSON pairs). Each prompt is the Seg-Zero user turn
(image resized to ``image_size`` squared, then ``segzero_edge.prompt.build_prompt(query)``); the
ground-truth boxes/points travel as dataset columns to the reward functions. Answers are always
scored in the 840 x 840 frame the runtime maps back from (``REASONER_SIZE``), whatever
``image_size`` the model is shown (smaller only to keep CPU runs cheap). One TRL reward function
per reward term, so TRL logs each. After every optimizer step one row (step, mean total reward,
mean of each term, KL) is added to ``reward_table.tsv`` in the output folder and printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from segzero_edge.layout import PATCH_MERGE
from segzero_edge.prompt import build_prompt

from .config import GRPOSettings, load_settings, to_grpo_config

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

    if kind == "segzero":
        return rewards.segzero_rewards
    if kind == "multi_object":
        return rewards.multi_object_rewards
    raise ValueError(f"unknown reward kind {kind!r} (segzero or multi_object)")


@lru_cache(maxsize=8192)
def _scores(kind: str, text: str, boxes: tuple, points: tuple) -> dict[str, float]:
    from .rewards import GroundTruth

    gt = GroundTruth(boxes=[list(b) for b in boxes], points=[list(p) for p in points])
    return dict(_score_fn(kind)(text, gt))


def _as_tuple(rows: Any) -> tuple:
    return tuple(tuple(int(v) for v in row) for row in rows)


def reward_terms(kind: str) -> list[str]:
    """Names of the reward terms (without ``total``) of a reward kind, in their order."""
    from .rewards import MULTI_OBJECT_TERMS, SEGZERO_TERMS

    _score_fn(kind)  # validates kind
    return list(SEGZERO_TERMS if kind == "segzero" else MULTI_OBJECT_TERMS)


class RewardTerm:
    """One reward term as a TRL reward function: ``f(prompts, completions, **columns) -> list``."""

    def __init__(self, kind: str, term: str) -> None:
        self.kind = kind
        self.term = term
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
                self.kind, completion_text(completion), _as_tuple(boxes), _as_tuple(points)
            )
            out.append(float(scores[self.term]))
        return out

    def __repr__(self) -> str:
        return f"RewardTerm({self.kind!r}, {self.term!r})"


def reward_funcs(kind: str) -> list[RewardTerm]:
    """One TRL reward function per term; TRL sums them (weights 1) into the Seg-Zero total."""
    return [RewardTerm(kind, term) for term in reward_terms(kind)]


def is_format_term(term: str) -> bool:
    """True for terms that score the output format; the others score localisation accuracy."""
    return term in FORMAT_TERMS


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sample:
    """One training prompt: image file, query and ground truth in the ``REASONER_SIZE`` frame."""

    image_path: Path
    query: str
    boxes: list[list[int]]
    points: list[list[int]]


def load_samples(data_dir: str | Path, *, per_instance: bool = False) -> list[Sample]:
    """ReasonSeg-format folder -> samples with ground truth in the 840 frame.

    ``per_instance``: one box/point per target instance (multi-object reward) instead of the
    whole target as one object (Seg-Zero reward).
    """
    from .datasets import iter_reasonseg

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"data folder not found: {data_dir}")
    samples = []
    for item in iter_reasonseg(data_dir):
        gt = item.instances if per_instance else item.ground_truth
        if not gt.boxes:
            continue  # empty target: nothing to localise
        samples.append(
            Sample(
                image_path=Path(item.image_path),
                query=item.query,
                boxes=[[round(v) for v in b] for b in gt.boxes],
                points=[[round(v) for v in p] for p in gt.points],
            )
        )
    if not samples:
        raise ValueError(f"no ReasonSeg samples with a target in {data_dir}")
    return samples


def load_square_image(path: Path, size: int) -> Any:
    """The image as RGB, resized to ``size`` x ``size`` with PIL bilinear (as the runtime does)."""
    from PIL import Image

    from segzero_edge.image import load_image

    return Image.fromarray(load_image(path), "RGB").resize((size, size), Image.BILINEAR)


def user_turn(query: str) -> list[dict[str, Any]]:
    """The Seg-Zero conversation prompt; TRL inserts the image block before the text."""
    return [{"role": "user", "content": build_prompt(query)}]


def prompt_token_count(processor: Any, query: str, image_size: int) -> int:
    """Tokens of the templated prompt including the image's merged patch tokens."""
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": build_prompt(query)}],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n_text = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    return n_text - 1 + (image_size // PATCH_MERGE) ** 2


def build_dataset(
    samples: list[Sample],
    image_size: int,
    processor: Any = None,
    max_prompt_length: int | None = None,
) -> Any:
    """A ``datasets.Dataset`` with ``prompt``, ``image``, ``gt_boxes``, ``gt_points``, ``query``.

    Prompts longer than ``max_prompt_length`` tokens are dropped (TRL cannot truncate a prompt
    that holds image tokens); the count is printed.
    """
    import datasets

    rows, dropped = [], 0
    for s in samples:
        too_long = (
            processor is not None
            and max_prompt_length is not None
            and prompt_token_count(processor, s.query, image_size) > max_prompt_length
        )
        if too_long:
            dropped += 1
            continue
        rows.append(
            {
                "prompt": user_turn(s.query),
                "image": load_square_image(s.image_path, image_size),
                "gt_boxes": s.boxes,
                "gt_points": s.points,
                "query": s.query,
            }
        )
    if dropped:
        print(f"dropped {dropped} prompt(s) longer than {max_prompt_length} tokens", flush=True)
    if not rows:
        raise ValueError("no training prompts left (all longer than max_prompt_length?)")
    features = datasets.Features(
        {
            "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            "image": datasets.Image(),
            "gt_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
            "gt_points": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
            "query": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


# --------------------------------------------------------------------------- logging


def _reward_table_callback(output_dir: Path, terms: list[str]) -> Any:
    from transformers import TrainerCallback

    class RewardTable(TrainerCallback):
        """Collect one row per optimizer step from TRL's logs; write and print the table."""

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self.columns = ["step", "reward", *terms, "accuracy_sum", "kl", "completion_len"]

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "reward" not in logs:
                return
            row = {"step": float(state.global_step), "reward": float(logs["reward"])}
            for t in terms:
                row[t] = float(logs.get(f"rewards/{t}/mean", math.nan))
            row["accuracy_sum"] = sum(row[t] for t in terms if not is_format_term(t))
            row["kl"] = float(logs.get("kl", math.nan))
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    lines = ["\t".join(columns), *(format_row(r, columns) for r in rows)]
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_table(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``reward_table.tsv`` as dicts of floats."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, map(float, line.split("\t")), strict=True)) for line in lines[1:]]


# --------------------------------------------------------------------------- training


def train_grpo(
    model_dir: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    settings: GRPOSettings,
) -> list[dict[str, float]]:
    """Run GRPO; return the per-step reward table rows (also ``output_dir/reward_table.tsv``)."""
    import torch
    from transformers import AutoProcessor
    from trl import GRPOTrainer

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"not a Hugging Face model folder (no config.json): {model_dir}")
    settings.validate()
    args = to_grpo_config(settings, output_dir)
    if args.model_init_kwargs is None:
        dtype = "bfloat16" if settings.bf16 else "float32"
        args.model_init_kwargs = {"dtype": dtype}
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = build_dataset(
        load_samples(data_dir, per_instance=settings.reward == "multi_object"),
        settings.image_size,
        processor,
        settings.max_prompt_length,
    )
    terms = reward_terms(settings.reward)
    table = _reward_table_callback(output_dir, terms)
    torch.manual_seed(settings.seed)
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs(settings.reward),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[table],
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(output_dir))
    return table.rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.grpo",
        description="GRPO training of the Seg-Zero reasoner with TRL (Seg-Zero, arXiv 2503.06520).",
    )
    p.add_argument(
        "--model", required=True, help="Hugging Face Qwen2.5-VL folder (policy + reference)"
    )
    p.add_argument("--data", required=True, help="ReasonSeg-format folder (JPG + JSON pairs)")
    p.add_argument("--output", required=True, help="output folder (checkpoints, reward_table.tsv)")
    p.add_argument(
        "--config", default=None, help="settings YAML/JSON (default: configs/grpo_segzero.yaml)"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value settings overrides, e.g. max_steps=10 trl.logging_dir=x",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, args.overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = train_grpo(args.model, args.data, args.output, settings)
    print(f"done: {len(rows)} step(s); table in {Path(args.output) / TABLE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
