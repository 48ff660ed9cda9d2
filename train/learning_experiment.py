"""Does GRPO learn? A reproducible CPU experiment on a learnable synthetic task.

    python -m segzero_train.learning_experiment --out DIR [--seeds 0 1 2] [--sft-steps N]
        [--grpo-steps N] [--learning-rate LR]

A tiny random Qwen2.5-VL (:mod:`segzero_export.tiny_qwen`) gets one short SFT warm-up
(:mod:`segzero_train.sft`; ``--sft-per-seed`` for one per seed) on synthetic scenes
(:mod:`segzero_train.synthetic`, ``query_kinds=("region",)``: one shape near a 3 x 3 grid cell,
the query names the shape and the cell), which teaches the answer format and a rough
localisation; then, for every seed, GRPO (:mod:`segzero_train.grpo`, the Seg-Zero recipe with
the overrides of ``GRPO_OVERRIDES`` and the flags: a tiny model needs a larger learning rate and
short answers). Before and after GRPO, the model answers a held-out set and is scored with

- the mean Seg-Zero accuracy reward (``box_iou + box_l1 + points``, 0..3) and the mean total
  reward (0..5) of :func:`segzero_train.rewards.segzero_rewards`, greedy, and the accuracy
  reward of 4 answers per scene sampled at temperature 1 (the policy GRPO optimises);
- gIoU / cIoU of the predicted boxes filled as masks against the target polygons
  (:func:`segzero_train.evaluate.evaluate`, LISA protocol; no SAM2, whose tiny random weights
  would only add noise).

The defaults are the settings of the table in train/README.md. Writes ``results.json``,
``results.md`` (that table: mean and spread over the seeds) and ``reward_curves.png`` (accuracy
reward of the rollouts per GRPO step for every seed). The output folder is resumable.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUERY_KINDS = ("region",)
GRPO_OVERRIDES = {
    "num_generations": 8,
    "per_device_train_batch_size": 16,
    "max_completion_length": 64,
    "bf16": False,  # fp32 throughout on CPU (fp32 master weights either way)
    "gradient_checkpointing": False,
    "use_cpu": True,
    "save_strategy": "no",
    "logging_steps": 1,
    "disable_tqdm": True,
    "report_to": "none",
}
"""Changes to the Seg-Zero recipe for the tiny CPU model (everything else is the recipe)."""


def make_sets(
    out: Path, n_train: int, n_heldout: int, size: tuple[int, int], shapes: tuple[int, int]
) -> tuple[Path, Path]:
    """The synthetic training and held-out sets (fixed seeds, independent of the run seed)."""
    from .synthetic import make_synthetic_set

    kw: dict[str, Any] = {"image_size": size, "shapes": shapes, "query_kinds": QUERY_KINDS}
    train, held = out / "data_train", out / "data_heldout"
    if not train.is_dir():
        make_synthetic_set(train, n_train, seed=1000, **kw)
    if not held.is_dir():
        make_synthetic_set(held, n_heldout, seed=2000, **kw)
    return train, held


def generate(
    model_dir: Path, samples: list[Any], image_size: int, batch: int = 16, sampled: int = 0
) -> list[str]:
    """Greedy answers of an HF model for samples (:class:`segzero_train.datasets.SegSample`);
    with ``sampled=k``, k answers per sample at temperature 1 (GRPO's rollout setting), in a row.
    """
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from segzero_edge.families import MULTI_OBJECT

    from .data import square

    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts: list[str] = []
    for k in range(0, len(samples), batch):
        chunk = samples[k : k + batch]
        prompts = [
            processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": MULTI_OBJECT.build_prompt(s.query)},
                        ],
                    }
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for s in chunk
        ]
        images = [square(Image.open(s.image_path), image_size) for s in chunk]
        inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
        with torch.inference_mode():
            if sampled:
                out = model.generate(
                    **inputs, max_new_tokens=80, do_sample=True, temperature=1.0, top_p=1.0,
                    top_k=0, num_return_sequences=sampled,
                )  # fmt: skip
            else:
                out = model.generate(**inputs, max_new_tokens=80, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        texts.extend(processor.batch_decode(new, skip_special_tokens=True))
    return texts


class BoxMaskPredictor:
    """Predictor for :func:`segzero_train.evaluate.evaluate`: precomputed answers, the runtime's
    parse, every predicted box filled as the mask."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def __call__(self, sample: Any) -> Any:
        from segzero_edge.answer import parse_answer
        from segzero_edge.families import MULTI_OBJECT

        from .evaluate import Prediction

        text = self.answers[sample.name]
        parsed = parse_answer(text)
        w, h = sample.size
        objects = MULTI_OBJECT.to_image_pixels(parsed.objects, (h, w))
        mask = np.zeros((h, w), bool)
        for o in objects:
            x1, y1, x2, y2 = o.box
            mask[y1 : y2 + 1, x1 : x2 + 1] = True
        return Prediction(
            mask=mask,
            status=parsed.status.value,
            answer=text,
            objects=[o.to_json() for o in objects],
        )

    def segment_objects(self, sample: Any, objects: list[Any]) -> np.ndarray:
        w, h = sample.size
        mask = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in (o.box for o in objects):
            mask[max(y1, 0) : max(y2 + 1, 0), max(x1, 0) : max(x2 + 1, 0)] = True
        return mask


def score(model_dir: Path, heldout: Path, image_size: int, sampled: int = 4) -> dict[str, float]:
    """Held-out scores of a model: greedy mean accuracy reward, mean total reward, gIoU/cIoU;
    and the mean accuracy reward of ``sampled`` temperature-1 answers per sample."""
    import torch

    torch.manual_seed(0)
    from .datasets import iter_reasonseg
    from .evaluate import evaluate
    from .rewards import segzero_rewards

    samples = list(iter_reasonseg(heldout))
    texts = generate(model_dir, samples, image_size)
    rewards = [segzero_rewards(t, s.ground_truth) for t, s in zip(texts, samples, strict=True)]
    acc = [r["box_iou"] + r["box_l1"] + r["points"] for r in rewards]
    report = evaluate(
        samples,
        BoxMaskPredictor({s.name: t for s, t in zip(samples, texts, strict=True)}),
        family="multi-object",
        progress=False,
    )
    lisa = report["summary"]["lisa"]["all"]
    return {
        "accuracy_reward": float(np.mean(acc)),
        "total_reward": float(np.mean([r["total"] for r in rewards])),
        "box_iou_reward": float(np.mean([r["box_iou"] for r in rewards])),
        "giou": float(lisa["giou"]),
        "ciou": float(lisa["ciou"]),
        "parse_failures": int(lisa["parse_failures"]),
        "sampled_accuracy_reward": _sampled_accuracy(model_dir, samples, image_size, sampled),
    }


def _sampled_accuracy(model_dir: Path, samples: list[Any], image_size: int, k: int) -> float:
    from .rewards import segzero_rewards

    texts = generate(model_dir, samples, image_size, sampled=k)
    gts = [s.ground_truth for s in samples for _ in range(k)]
    rewards = [segzero_rewards(t, g) for t, g in zip(texts, gts, strict=True)]
    return float(np.mean([r["box_iou"] + r["box_l1"] + r["points"] for r in rewards]))


def grpo_argv(args: argparse.Namespace, model: Path, data: Path, out: Path, seed: int) -> list:
    """The ``python -m segzero_train.grpo`` arguments of one run."""
    argv = ["--model", str(model), "--data", str(data), "--output_dir", str(out)]
    argv += ["--max_steps", str(args.grpo_steps), "--learning_rate", str(args.learning_rate)]
    argv += ["--seed", str(seed), "--image_size", str(args.image_size)]
    argv += ["--prompts_per_step", str(args.prompts_per_step)]
    # the SFT warm-up teaches the multi-object answer format, scored by the segzero reward
    argv += ["--family", "multi-object"]
    for key, value in GRPO_OVERRIDES.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def run_seed(args: argparse.Namespace, seed: int, base: Path, train: Path, held: Path) -> dict:
    """SFT, score, GRPO, score for one seed; results are cached in ``out/seed<N>/``."""
    from .config import parse_args
    from .grpo import TABLE_NAME, read_table, train_grpo
    from .sft import train_sft

    folder = args.out / f"seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sft = args.sft_model or (folder / "sft" if args.sft_per_seed else args.out / "sft")
    if not sft.is_dir():
        train_sft(
            base, train, sft, steps=args.sft_steps, image_size=args.image_size,
            batch_size=8, learning_rate=args.sft_lr, seed=seed, use_cpu=True,
        )  # fmt: skip
    t_sft = time.perf_counter() - t0
    cached = sft / "heldout_scores.json"
    if cached.is_file():
        before = json.loads(cached.read_text())
    else:
        before = score(sft, held, args.image_size)
        cached.write_text(json.dumps(before))
    print(f"seed {seed} after SFT: {before}", flush=True)
    grpo = folder / "grpo"
    script, cfg = parse_args(grpo_argv(args, sft, train, grpo, seed), world_size=1)
    t1 = time.perf_counter()
    train_grpo(script, cfg)
    t_grpo = time.perf_counter() - t1
    after = score(grpo, held, args.image_size)
    print(f"seed {seed} after GRPO: {after}", flush=True)
    result = {
        "seed": seed,
        "before": before,
        "after": after,
        "curve": read_table(grpo / TABLE_NAME),
        "seconds": {"sft": round(t_sft, 1), "grpo": round(t_grpo, 1)},
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def summary_table(results: list[dict]) -> str:
    """Markdown table: mean and sample standard deviation over seeds, before and after GRPO."""
    keys = [
        ("accuracy_reward", "accuracy reward (0..3)"),
        ("box_iou_reward", "box IoU > 0.5 (0..1)"),
        ("total_reward", "total reward (0..5)"),
        ("sampled_accuracy_reward", "accuracy reward, 4 samples at T=1"),
        ("giou", "gIoU (box masks)"),
        ("ciou", "cIoU (box masks)"),
    ]
    seeds = ", ".join(str(r["seed"]) for r in results)
    lines = [
        f"| held-out metric (seeds {seeds}) | after SFT | after GRPO | change | per seed |",
        "|---|---|---|---|---|",
    ]
    for key, label in keys:
        b = [r["before"][key] for r in results]
        a = [r["after"][key] for r in results]
        d = [x - y for x, y in zip(a, b, strict=True)]

        def ms(v: list[float]) -> str:
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            return f"{statistics.mean(v):.3f} ± {sd:.3f}"

        per = ", ".join(f"{y:.3f}→{x:.3f}" for y, x in zip(b, a, strict=True))
        lines.append(f"| {label} | {ms(b)} | {ms(a)} | {ms(d)} | {per} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    """Accuracy reward of the rollouts per GRPO step (thin) and its 5-step moving mean (thick),
    per seed; the held-out accuracy of temperature-1 samples before (dotted) and after (dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for r in results:
        steps = [row["step"] for row in r["curve"]]
        acc = [row["accuracy_sum"] for row in r["curve"]]
        k = 5
        smooth = [float(np.mean(acc[max(0, i - k + 1) : i + 1])) for i in range(len(acc))]
        (line,) = ax.plot(steps, smooth, lw=2, label=f"seed {r['seed']}")
        ax.plot(steps, acc, lw=0.6, alpha=0.4, color=line.get_color())
        key = "sampled_accuracy_reward"
        if key in r["before"]:
            ax.axhline(r["before"][key], color=line.get_color(), ls=":", lw=1)
            ax.plot([steps[-1] + 1], [r["after"][key]], "o", color=line.get_color())
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("accuracy reward (0..3)")
    ax.set_title(
        "GRPO rollouts (lines); held-out, 4 samples at T=1: after SFT (dotted), after GRPO (dot)",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.learning_experiment", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--heldout-size", type=int, default=48)
    p.add_argument("--image-size", type=int, default=112, help="model input side (x28)")
    p.add_argument("--sft-steps", type=int, default=110)
    p.add_argument("--sft-lr", type=float, default=1e-3)
    p.add_argument(
        "--sft-per-seed",
        action="store_true",
        help="one SFT warm-up per seed (default: one for all seeds, trained with the first seed)",
    )
    p.add_argument(
        "--sft-model",
        type=Path,
        default=None,
        help="start every seed's GRPO from this SFT model (one warm-up for all seeds)",
    )
    p.add_argument("--grpo-steps", type=int, default=60)
    p.add_argument("--prompts-per-step", type=int, default=4, help="x 8 rollouts")
    p.add_argument("--shapes", type=int, nargs=2, default=[1, 1], help="min, max per scene")
    p.add_argument("--learning-rate", type=float, default=3e-5, help="GRPO learning rate")
    return p


def main(argv: list[str] | None = None) -> int:
    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / "tiny_qwen"
    if not base.is_dir():
        build_tiny_qwen25vl(base, seed=0)
    shapes = (args.shapes[0], args.shapes[1])
    train, held = make_sets(args.out, args.train_size, args.heldout_size, (224, 168), shapes)
    results = []
    for seed in args.seeds:
        results.append(run_seed(args, seed, base, train, held))
    table = summary_table(results)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results}, indent=1)
    )
    plot(results, args.out / "reward_curves.png")
    print(table)
    ok = all(math.isfinite(r["after"]["accuracy_reward"]) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
