"""Short supervised warm-up so a (tiny) reasoner learns the Seg-Zero output format.

    python -m segzero_train.sft --model DIR --data DIR --output DIR [--steps N] [--image-size S]

Each example is the Seg-Zero user turn (image + ``build_prompt(query)``) followed by the target
``<think>...</think><answer>[...]</answer>`` built from the ground truth with
``segzero_edge.answer.format_answer``; the loss covers the assistant tokens only. Runs on
``transformers.Trainer`` (so ``accelerate launch`` / DeepSpeed work as for GRPO).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from segzero_edge.answer import format_answer
from segzero_edge.prompt import build_prompt
from segzero_edge.types import ObjectPrompt

from .grpo import Sample, load_samples, load_square_image

IGNORE_INDEX = -100


DEFAULT_REASONING = "I look at the image and compare the objects."
"""Placeholder thinking for the warm-up: the data has no reasoning text, only the format matters."""


def target_text(sample: Sample, reasoning: str = DEFAULT_REASONING) -> str:
    """The answer a well-behaved model writes for ``sample`` (coordinates in the 840 frame)."""
    objects = [
        ObjectPrompt(box=tuple(b), points=(tuple(p),))  # type: ignore[arg-type]
        for b, p in zip(sample.boxes, sample.points, strict=True)
    ]
    return format_answer(objects, reasoning)


class SFTCollator:
    """Chat-templated prompt + target; labels mask everything but the assistant answer."""

    def __init__(self, processor: Any, image_size: int) -> None:
        self.processor = processor
        self.image_size = image_size
        self.eos = processor.tokenizer.eos_token

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        messages = [
            [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": build_prompt(s.query)}],
                }
            ]
            for s in samples
        ]
        prompts = [
            self.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
            for m in messages
        ]
        texts = [p + target_text(s) + self.eos for p, s in zip(prompts, samples, strict=True)]
        images = [load_square_image(s.image_path, self.image_size) for s in samples]
        tok = self.processor.tokenizer
        tok.padding_side = "right"
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        prompt_ids = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        prompt_lens = prompt_ids["attention_mask"].sum(dim=1)
        labels = batch["input_ids"].clone()
        for i, n in enumerate(prompt_lens.tolist()):
            labels[i, :n] = IGNORE_INDEX
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        batch["labels"] = labels
        return dict(batch)


def train_sft(
    model_dir: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    *,
    steps: int = 200,
    image_size: int = 840,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    seed: int = 0,
    use_cpu: bool | None = None,
    bf16: bool = False,
) -> dict[str, float]:
    """Fine-tune on the folder's ground-truth answers; write model + processor to ``output_dir``.

    Returns ``{"first_loss", "last_loss", "steps"}`` (mean of the first / last 10 logged losses).
    The output folder is written to a temp dir next to it, then renamed.
    """
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        Trainer,
        TrainingArguments,
    )

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"not a Hugging Face model folder (no config.json): {model_dir}")
    if output_dir.exists():
        raise FileExistsError(f"output folder already exists: {output_dir}")
    if image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28, got {image_size}")
    samples = load_samples(data_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype)
    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        args = TrainingArguments(
            output_dir=str(tmp / "trainer"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=min(10, steps // 10),
            weight_decay=0.0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=seed,
            use_cpu=use_cpu,
            bf16=bf16,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=samples,  # type: ignore[arg-type]
            data_collator=SFTCollator(processor, image_size),
        )
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        model.save_pretrained(tmp / "model")
        processor.save_pretrained(tmp / "model")
        (tmp / "model").rename(output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    k = min(10, len(losses))
    return {
        "first_loss": sum(losses[:k]) / max(k, 1),
        "last_loss": sum(losses[-k:]) / max(k, 1),
        "steps": float(steps),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.sft", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", required=True, help="Hugging Face Qwen2.5-VL folder")
    p.add_argument("--data", required=True, help="ReasonSeg-format folder (e.g. the synthetic set)")
    p.add_argument("--output", required=True, help="output model folder (must not exist)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--image-size", type=int, default=840)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        stats = train_sft(
            a.model, a.data, a.output, steps=a.steps, image_size=a.image_size,
            batch_size=a.batch_size, learning_rate=a.lr, seed=a.seed, bf16=a.bf16,
        )  # fmt: skip
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not all(math.isfinite(v) for v in stats.values()):
        print(f"error: non-finite loss {stats}", file=sys.stderr)
        return 1
    print(
        f"sft done: loss {stats['first_loss']:.3f} -> {stats['last_loss']:.3f} in {a.steps} steps"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
