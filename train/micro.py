"""Train the micro model of the scene task from scratch: one resumable command.

    python -m segzero_train.micro --out DIR [--smoke] [--seed 0] [--<setting> VALUE ...]

Stages, each skipped when its output is already there (so a stopped run continues where it
stopped; GRPO and SAM2 also resume inside their stage from their last checkpoint):

1. ``data/``: the scene task (:mod:`segzero_train.scene_set`) with the fixed data seed
   :data:`DATA_SEED`: ``train`` (``train_size`` samples), ``heldout_scenes`` and
   ``heldout_compositions`` (``heldout_size`` each), 448 x 336 JPEG + ReasonSeg JSON;
2. ``base/``: the micro Qwen2.5-VL reasoner, random (:data:`MICRO_QWEN` sizes, its own BPE
   vocabulary trained on the task's words, :func:`segzero_export.tiny_qwen.build_tiny_qwen25vl`);
3. ``sft/``: :func:`segzero_train.sft.train_sft` on the think + answer targets, one object per
   target instance and ``[]`` for a query with none (the
   ``micro-scene`` family: the image shown at ``image_size``, its 336 resize by default;
   coordinates in the 840 range, rounded to ``coord_step``); with ``name_steps`` > 0 it starts
   from ``sft_names/``: that many steps on the name queries alone, the answer alone as target;
4. ``grpo/``: :func:`segzero_train.grpo.train_grpo` with Seg-Zero's multi-object reward
   (checkpoints every ``grpo_save_steps``; ``--resume latest`` when one is there);
5. ``sam2/``: the micro SAM2 (:mod:`segzero_train.micro_sam2`);
6. ``results.json`` + ``results.md``: the settings, the data seed, each stage's time, the SAM2
   held-out IoU, and on the first ``eval_size`` samples of both held-out splits: the trained
   pair (the GRPO reasoner through :class:`segzero_train.evaluate.HFPredictor` with the micro
   SAM2), the same on flat grey images (the flat-image control) and the query-only control.

``--smoke`` shrinks every stage to a few steps (a check that the recipe runs end to end, not a
model).

``--stage grpo`` runs the GRPO stage alone, for several processes (the stages before it must be
done, and the same settings given as for the run: ``recipe.json`` is checked), e.g. two CPU
processes over gloo:

    accelerate launch --multi_gpu --num_processes 2 -m segzero_train.micro --out DIR --stage grpo

(on a machine without a GPU, accelerate runs ``--multi_gpu`` processes on the CPU over gloo;
``--cpu`` with several processes needs mpirun). Each process then takes ``prompts_per_step x
num_generations / world size`` completions per step, so one optimizer step still sees every
completion of its prompts (the same run as one process, split); the world size must divide
that number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from segzero_edge.families import MICRO_RESIZE_SIZE, MICRO_SCENE

DATA_SEED = 0
"""Seed of the scene task's data (the run seed only seeds the models' training)."""

SCENE_SIZE = (448, 336)

FAMILY = "micro-scene"
"""The micro reasoner's model family (:data:`segzero_edge.families.MICRO_SCENE`: 336 resize,
short prompt, multi-object answers in the 840 coordinate range)."""


def micro_qwen_sizes(rope_theta: float = 1000000.0) -> Any:
    """The micro reasoner's sizes: 4 text layers of width 256, a 4-block vision tower of width
    128, a 1500-token BPE vocabulary (about 5 M parameters); ``rope_theta`` the language model's
    RoPE base (M-RoPE gives the image width the lowest frequencies: with Qwen's 1e6 the 12 columns
    of the 336 frame differ by at most 0.002 rad; see train/README.md)."""
    from segzero_export.tiny_qwen import QwenSizes

    return QwenSizes(
        rope_theta=rope_theta,
        bpe_vocab=1500,
        text_hidden=256,
        text_intermediate=1024,
        text_layers=4,
        text_heads=4,
        text_kv_heads=2,
        mrope_section=(8, 12, 12),
        vision_depth=4,
        vision_fullatt=(1, 3),
        vision_hidden=128,
        vision_heads=2,
        vision_intermediate=256,
    )


@dataclasses.dataclass
class Recipe:
    """Every setting of a run (written to ``recipe.json``; a rerun must use the same)."""

    seed: int = 0
    train_size: int = 2000
    heldout_size: int = 300
    image_size: int = MICRO_RESIZE_SIZE
    sft_steps: int = 400
    sft_batch: int = 8
    sft_lr: float = 1e-3
    sft_save_steps: int = 50
    name_steps: int = 0
    coord_step: int = 1
    rope_theta: float = 1000000.0
    grpo_steps: int = 40
    grpo_lr: float = 3e-5
    prompts_per_step: int = 4
    num_generations: int = 8
    grpo_save_steps: int = 10
    max_completion_length: int = 128
    sam2_steps: int = 250
    sam2_batch: int = 4
    sam2_lr: float = 1e-3
    eval_size: int = 60


ADDED_SETTINGS = {"name_steps": 0, "coord_step": 1, "rope_theta": 1000000.0}
"""Settings added after the first runs, with the values those runs had."""

SMOKE = {
    "train_size": 24,
    "heldout_size": 8,
    "image_size": 112,
    "sft_steps": 2,
    "sft_batch": 2,
    "sft_save_steps": 1,
    "name_steps": 1,
    "grpo_steps": 1,
    "prompts_per_step": 2,
    "num_generations": 2,
    "grpo_save_steps": 1,
    "max_completion_length": 24,
    "sam2_steps": 2,
    "sam2_batch": 1,
    "eval_size": 2,
}
"""Settings of ``--smoke``."""


def task_corpus() -> list[str]:
    """The task's words for the reasoner's BPE: every phrasing with every kind and colour, the
    prompts and answers in the multi-object format."""
    from .scene_queries import PLURAL, TEMPLATES, USES
    from .scenes import COLOURS, KINDS

    lines = []
    for text, _sentence, _held in TEMPLATES.values():
        for kind in KINDS:
            for colour in COLOURS:
                ref = f"{colour} {KINDS[(KINDS.index(kind) + 3) % len(KINDS)]}"
                lines.append(text.format(colour=colour, kind=kind, kinds=PLURAL[kind],
                                         ref_name=ref))  # fmt: skip
    for _kinds, train, held in USES.values():
        lines.extend(train + held)
    lines.extend(MICRO_SCENE.build_prompt(q) for q in lines[:: max(1, len(lines) // 50)])
    for k in range(60):
        x, y = (37 * k) % 700, (53 * k) % 700
        lines.append(
            f'<think> I look at the image and compare the objects. </think><answer>[{{"bbox_2d": '
            f'[{x},{y},{x + 120 + k},{y + 90 + k}], "point_2d": [{x + 60},{y + 45}]}}]</answer>'
        )
    return lines


def _log(out: Path, message: str) -> None:
    print(message, flush=True)
    with (out / "log.txt").open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")


def stage_data(out: Path, r: Recipe) -> dict[str, Path]:
    from .scene_set import make_scene_set

    sets = {}
    for split, n in (
        ("train", r.train_size),
        ("heldout_scenes", r.heldout_size),
        ("heldout_compositions", r.heldout_size),
    ):
        path = out / "data" / split
        if not path.is_dir():
            make_scene_set(path, n, split=split, seed=DATA_SEED, size=SCENE_SIZE)
        sets[split] = path
    return sets


def stage_base(out: Path, r: Recipe) -> Path:
    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    base = out / "base"
    if not base.is_dir():
        build_tiny_qwen25vl(
            base, seed=r.seed, sizes=micro_qwen_sizes(r.rope_theta), extra_corpus=task_corpus(),
            trainable_init=True,
        )  # fmt: skip
    return base


def stage_sft(out: Path, r: Recipe, base: Path, train: Path) -> Path:
    """SFT: first ``name_steps`` steps on the name queries alone with the answer alone as target
    (``sft_names/``; skipped for 0), then ``sft_steps`` on every query with think + answer."""
    from .sft import train_sft

    common: dict[str, Any] = {
        "image_size": r.image_size, "batch_size": r.sft_batch, "learning_rate": r.sft_lr,
        "seed": r.seed, "use_cpu": True, "family": FAMILY, "save_steps": r.sft_save_steps,
        "per_instance": True, "coord_step": r.coord_step,
    }  # fmt: skip
    start = base
    if r.name_steps > 0:
        start = out / "sft_names"
        checkpoints = out / "sft_names_checkpoints"
        if not start.is_dir():
            stats = train_sft(
                base, train, start, steps=r.name_steps, checkpoint_dir=checkpoints,
                families=["name"], think=False, keep_empty=False, **common,
            )  # fmt: skip
            (start / "sft_stats.json").write_text(json.dumps(stats, indent=1))
        shutil.rmtree(checkpoints, ignore_errors=True)
    sft = out / "sft"
    checkpoints = out / "sft_checkpoints"
    if not sft.is_dir():
        stats = train_sft(
            start, train, sft, steps=r.sft_steps, checkpoint_dir=checkpoints, keep_empty=True,
            **common,
        )  # fmt: skip
        (sft / "sft_stats.json").write_text(json.dumps(stats, indent=1))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return sft


def grpo_argv(r: Recipe, sft: Path, train: Path, grpo: Path, world_size: int = 1) -> list[str]:
    """The ``python -m segzero_train.grpo`` arguments of the GRPO stage for ``world_size``
    processes (each takes its share of a step's completions). Raises ``ValueError`` when
    ``world_size`` does not divide ``prompts_per_step x num_generations``."""
    completions = r.prompts_per_step * r.num_generations
    if world_size < 1 or completions % world_size:
        raise ValueError(
            f"{world_size} processes cannot share the {completions} completions of a GRPO step "
            f"(prompts_per_step {r.prompts_per_step} x num_generations {r.num_generations})"
        )
    argv = ["--model", str(sft), "--data", str(train), "--output_dir", str(grpo)]
    settings: dict[str, Any] = {
        "reward": "multi-object",
        "family": FAMILY,
        "image_size": r.image_size,
        "max_steps": r.grpo_steps,
        "learning_rate": r.grpo_lr,
        "seed": r.seed,
        "prompts_per_step": r.prompts_per_step,
        "num_generations": r.num_generations,
        "per_device_train_batch_size": completions // world_size,
        "max_completion_length": r.max_completion_length,
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "save_strategy": "steps",
        "save_steps": r.grpo_save_steps,
        "logging_steps": 1,
        "disable_tqdm": True,
        "report_to": "none",
        "dataloader_num_workers": 0,
    }
    for key, value in settings.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def stage_grpo(out: Path, r: Recipe, sft: Path, train: Path, world_size: int = 1) -> Path:
    from .config import parse_args, rank_from_env
    from .grpo import train_grpo

    grpo = out / "grpo"
    done = grpo / "DONE"
    if done.is_file():
        return grpo
    argv = grpo_argv(r, sft, train, grpo, world_size)
    if grpo.is_dir() and any(grpo.glob("checkpoint-*")):
        argv += ["--resume", "latest"]
    script, cfg = parse_args(argv, world_size=world_size)
    train_grpo(script, cfg)
    if rank_from_env() == 0:
        done.write_text("ok\n")
    return grpo


def run_grpo_stage(out: Path, r: Recipe) -> Path:
    """The GRPO stage alone, in each of ``WORLD_SIZE`` processes (``accelerate launch``).

    Raises ``ValueError`` when ``out`` holds no run with the stages before GRPO done, or other
    settings than ``r``."""
    from .config import rank_from_env, world_size_from_env

    recipe_file = out / "recipe.json"
    if not recipe_file.is_file():
        raise ValueError(f"{out} holds no micro run ({recipe_file} is missing); run it first")
    check_recipe(out, r)
    sft, train = out / "sft", out / "data" / "train"
    for stage, path in (("data", out / "data" / "heldout_compositions"), ("sft", sft)):
        if not path.exists():
            raise ValueError(f"stage {stage} of {out} is not done; run the stages before grpo")
    import torch.distributed as dist

    world = world_size_from_env()
    if rank_from_env() == 0:
        _log(out, f"stage grpo on {world} process(es)")
    grpo = stage_grpo(out, r, sft, train, world)
    if rank_from_env() == 0 and dist.is_available() and dist.is_initialized():
        _log(out, f"stage grpo done: {dist.get_world_size()} processes, {dist.get_backend()}")
    return grpo


def stage_sam2(out: Path, r: Recipe) -> Path:
    from .micro_sam2 import train_micro_sam2

    return train_micro_sam2(
        out / "sam2", steps=r.sam2_steps, batch=r.sam2_batch, learning_rate=r.sam2_lr,
        seed=r.seed, size=SCENE_SIZE, log=lambda m: _log(out, m),
    )  # fmt: skip


def evaluate_pair(
    out: Path, r: Recipe, grpo: Path, sam2: Path, samples: list[Any], tag: str
) -> dict[str, Any]:
    """The trained reasoner + micro SAM2 on ``samples`` (rows in ``eval/<tag>.json``)."""
    from segzero_export.micro_sam2 import build_micro_sam2

    from .evaluate import HFPredictor, evaluate, write_report

    predictor = HFPredictor(
        grpo, None, family=FAMILY, image_size=r.image_size,
        sam2_model=build_micro_sam2(sam2), max_new_tokens=r.max_completion_length * 2,
    )  # fmt: skip
    report = evaluate(
        samples, predictor, family=FAMILY, progress=False, source={"model": str(grpo)}
    )
    write_report(report, out / "eval" / f"{tag}.json")
    return report["summary"]


def stage_results(
    out: Path, r: Recipe, sets: dict[str, Path], grpo: Path, sam2: Path, seconds: dict[str, float]
) -> dict[str, Any]:
    from .datasets import iter_reasonseg
    from .micro_sam2 import evaluate_micro_sam2
    from .scene_controls import QueryOnlyControl, flat_image_samples, format_table, score_masks

    control = QueryOnlyControl().fit(iter_reasonseg(sets["train"]))
    (out / "eval").mkdir(exist_ok=True)
    scores: dict[str, dict[str, Any]] = {}
    for split in ("heldout_scenes", "heldout_compositions"):
        held = list(iter_reasonseg(sets[split], limit=r.eval_size))
        flat = flat_image_samples(held, out / "eval" / f"flat_{split}")
        scores[split] = {
            "model": evaluate_pair(out, r, grpo, sam2, held, split),
            "model_on_flat_images": evaluate_pair(out, r, grpo, sam2, flat, f"flat_{split}"),
            "query_only": score_masks(held, [control.predict_mask(s) for s in held]),
        }
    sam2_scores = evaluate_micro_sam2(sam2, n=8 if r.train_size < 100 else 64, size=SCENE_SIZE)
    results = {
        "recipe": dataclasses.asdict(r),
        "data_seed": DATA_SEED,
        "seconds": seconds,
        "sam2_heldout": sam2_scores,
        "heldout": scores,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Micro model run",
        "",
        f"data seed {DATA_SEED}, run seed {r.seed}; stage seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
        "",
        f"micro SAM2, box + point prompts on {int(sam2_scores['n'])} fresh scenes' objects: "
        f"mean IoU {sam2_scores['mean_iou']:.3f}",
        "",
        "| split | what | n | gIoU (segzero) | cIoU (segzero) | gIoU (lisa) | cIoU (lisa) |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, parts in scores.items():
        for what, summary in parts.items():
            seg, lisa = summary["segzero"]["all"], summary["lisa"]["all"]
            lines.append(
                f"| {split} | {what} | {seg['n']} | {100 * seg['giou']:.1f} | "
                f"{100 * seg['ciou']:.1f} | {100 * lisa['giou']:.1f} | {100 * lisa['ciou']:.1f} |"
            )
    lines.append("")
    for split, parts in scores.items():
        lines += [
            f"## query-only control by family, {split}",
            "",
            format_table(parts["query_only"]),
            "",
        ]
    (out / "results.md").write_text("\n".join(lines))
    return results


def check_recipe(out: Path, r: Recipe) -> None:
    """Raise ``ValueError`` when ``out/recipe.json`` holds other settings than ``r``; write it
    when there is none. A setting added later is missing from an older run's file: it counts as
    the value that run had (:data:`ADDED_SETTINGS`)."""
    recipe_file = out / "recipe.json"
    if recipe_file.is_file():
        saved = {**ADDED_SETTINGS, **json.loads(recipe_file.read_text())}
        if saved != dataclasses.asdict(r):
            raise ValueError(
                f"{out} holds a run with other settings ({recipe_file}); use a new --out or the "
                "same settings"
            )
    else:
        recipe_file.write_text(json.dumps(dataclasses.asdict(r), indent=1))


def run(out: Path, r: Recipe) -> dict[str, Any]:
    """Every stage in order (see the module docstring); returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    check_recipe(out, r)
    times_file = out / "seconds.json"
    seconds: dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    outputs = {
        "data": out / "data" / "heldout_compositions",
        "base": out / "base",
        "sft": out / "sft",
        "grpo": out / "grpo" / "DONE",
        "sam2": out / "sam2" / "sam2_micro.pt",
    }

    def timed(name: str, fn: Any, *args: Any) -> Any:
        if outputs[name].exists():
            _log(out, f"stage {name}: already done")
            return fn(*args)
        t0 = time.perf_counter()
        _log(out, f"stage {name}")
        value = fn(*args)
        seconds[name] = seconds.get(name, 0.0) + round(time.perf_counter() - t0, 1)
        times_file.write_text(json.dumps(seconds, indent=1))
        _log(out, f"stage {name} done in {seconds[name]:.0f} s")
        return value

    sets = timed("data", stage_data, out, r)
    base = timed("base", stage_base, out, r)
    sft = timed("sft", stage_sft, out, r, base, sets["train"])
    grpo = timed("grpo", stage_grpo, out, r, sft, sets["train"])
    sam2 = timed("sam2", stage_sam2, out, r)
    _log(out, "results")
    return stage_results(out, r, sets, grpo, sam2, seconds)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.micro", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    p.add_argument("--smoke", action="store_true", help="a few steps of every stage")
    p.add_argument(
        "--stage",
        choices=("grpo",),
        help="run this stage alone (under accelerate launch: one per process)",
    )
    for f in dataclasses.fields(Recipe):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = dict(SMOKE) if args.smoke else {}
    for f in dataclasses.fields(Recipe):
        value = getattr(args, f.name)
        if value is not None:
            settings[f.name] = value
    try:
        if args.stage == "grpo":
            run_grpo_stage(args.out, Recipe(**settings))
            return 0
        results = run(args.out, Recipe(**settings))
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "results.md").read_text())
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ADDED_SETTINGS",
    "DATA_SEED",
    "FAMILY",
    "SMOKE",
    "Recipe",
    "check_recipe",
    "grpo_argv",
    "micro_qwen_sizes",
    "run",
    "run_grpo_stage",
    "task_corpus",
]
