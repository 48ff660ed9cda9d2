"""Short supervised warm-up so a (tiny) reasoner learns the Seg-Zero output format.

    python -m segzero_train.sft --model DIR --data DATA --output DIR [--steps N] [--image-size S]

``--data`` is any source of :mod:`segzero_train.data` (Seg-Zero's released sets, ReasonSeg or
RefCOCO folders, the synthetic set). Each example is the user turn of the model family
(``--family``, default multi-object: image + its prompt for the query) and, as the assistant
turn, the answer built from the ground truth in that family's format
(``<think>...</think><answer>...</answer>``, :func:`segzero_train.data.target_text`). Runs on
``trl.SFTTrainer`` with its vision-language prompt-completion collator: the loss covers the
completion tokens only (``completion_only_loss``), and ``accelerate launch`` / DeepSpeed work as
for GRPO.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from segzero_edge.families import FAMILIES


def train_sft(
    model_dir: str | Path,
    data: str | Path,
    output_dir: str | Path,
    *,
    steps: int = 200,
    image_size: int | None = None,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    seed: int = 0,
    use_cpu: bool | None = None,
    bf16: bool = False,
    split: str = "train",
    max_samples: int | None = None,
    progress: bool = False,
    family: str = "multi-object",
    checkpoint_dir: str | Path | None = None,
    save_steps: int = 50,
    per_instance: bool = False,
    keep_empty: bool = False,
    think: bool = True,
    families: Sequence[str] | None = None,
    coord_step: int = 1,
) -> dict[str, float]:
    """Fine-tune on the ground-truth answers of ``data``; write model + processor to ``output_dir``.

    ``image_size``: side of the square image shown, a multiple of the family's ``patch_merge``
    (default: the family's ``resize_size``, 840 or 832 for ``qwen3vl-grounding``); the answers
    are in the family's coordinates (Qwen3-VL: the ground truth on the 0-1000 grid). The model's
    architecture must be the family's. Returns ``{"first_loss", "last_loss", "steps"}`` (mean of
    the first / last 10 logged losses). The output folder is written to a temp dir next to it,
    then renamed. Raises ``ValueError`` for a bad model folder, family, data or image size,
    ``FileExistsError`` when ``output_dir`` exists.

    ``per_instance``: one object per target instance in the answer (the multi-object form; else
    the whole target as one box); ``keep_empty``: train samples without a target too, with the
    empty answer ``[]`` (see :func:`segzero_train.data.training_dataset`); ``think``: the
    samples' thinking text in the targets (``False``: an empty ``<think></think>``, the loss on the
    answer alone); ``families``: only the scene task's samples of these query families;
    ``coord_step``: target coordinates rounded to multiples of this many answer units.

    ``checkpoint_dir``: keep trainer checkpoints (model, optimiser, scheduler, RNG) there every
    ``save_steps`` steps and resume from the newest one found there
    (``transformers.trainer_utils.get_last_checkpoint``), so a stopped run continues; the caller
    removes the folder when it no longer needs it. ``None``: no checkpoints.
    """
    import torch
    from transformers import AutoProcessor
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from segzero_edge.families import get_family

    from .config import check_family_architecture
    from .data import training_dataset

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"not a Hugging Face model folder (no config.json): {model_dir}")
    if output_dir.exists():
        raise FileExistsError(f"output folder already exists: {output_dir}")
    fam = get_family(family)
    check_family_architecture(model_dir, fam)
    image_size = fam.resize_size if image_size is None else image_size
    if image_size < fam.patch_merge or image_size % fam.patch_merge:
        raise ValueError(
            f"image_size must be a multiple of {fam.patch_merge} for the {fam.name} family, "
            f"got {image_size}"
        )
    processor = AutoProcessor.from_pretrained(model_dir)
    dataset = training_dataset(
        data,
        image_size=image_size,
        split=split,
        max_samples=max_samples,
        completion=True,
        family=fam,
        per_instance=per_instance,
        keep_empty=keep_empty,
        think=think,
        families=families,
        coord_step=coord_step,
    )
    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    resume = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        if checkpoint_dir.is_dir():
            resume = get_last_checkpoint(str(checkpoint_dir))
    try:
        args = SFTConfig(
            output_dir=str(checkpoint_dir or tmp / "trainer"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=min(10, steps // 10),
            weight_decay=0.0,
            logging_steps=1,
            save_strategy="no" if checkpoint_dir is None else "steps",
            save_steps=save_steps,
            save_total_limit=2,
            report_to="none",
            seed=seed,
            use_cpu=use_cpu,
            bf16=bf16,
            # fp32 master weights; the image tokens must never be cut
            model_init_kwargs={"dtype": "float32"},
            max_length=None,
            dataloader_num_workers=0,
            disable_tqdm=not progress,
            gradient_checkpointing=False,
        )
        trainer = SFTTrainer(
            model=str(model_dir), args=args, train_dataset=dataset, processing_class=processor
        )
        trainer.train(resume_from_checkpoint=resume)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        trainer.save_model(str(tmp / "model"))
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
    p.add_argument("--model", required=True, help="Hugging Face Qwen2.5-VL or Qwen3-VL folder")
    p.add_argument(
        "--data",
        required=True,
        help="Seg-Zero set (folder or hub id), ReasonSeg or RefCOCO folder, synthetic set",
    )
    p.add_argument("--split", default="train", help="split of --data")
    p.add_argument("--max-samples", type=int, default=None, help="first N samples only")
    p.add_argument("--output", required=True, help="output model folder (must not exist)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="square image side (x28 for Qwen2.5-VL, x32 for Qwen3-VL; "
        "default the family's resize_size)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fp32 master weights)")
    p.add_argument(
        "--family",
        default="multi-object",
        choices=sorted(FAMILIES),
        help="model family: its prompt and answer format (segzero-v1 needs two points per "
        "object, as Seg-Zero's released RefCOCOg sets have)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        stats = train_sft(
            a.model, a.data, a.output, steps=a.steps, image_size=a.image_size,
            batch_size=a.batch_size, learning_rate=a.lr, seed=a.seed, bf16=a.bf16,
            split=a.split, max_samples=a.max_samples, progress=True, family=a.family,
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
