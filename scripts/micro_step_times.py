"""Per-step cost of each stage of ``python -m segzero_train.micro`` at the recipe's sizes.

    python scripts/micro_step_times.py OUT_DIR [sft,grpo,sam2] [IMAGE_SIZE]

Builds a 48-scene training set and the micro reasoner in ``OUT_DIR``, then times a few steps of
each stage: SFT (``train_sft``, 6 steps of ``sft_batch``), GRPO (``train_grpo``, 2 steps of
``prompts_per_step x num_generations`` completions, from the 6-step SFT model, so most
completions run to ``max_completion_length``: the worst case) and the micro SAM2 (4 steps of
``sam2_batch``). Each step is timed in wall seconds and in process CPU seconds (both threads
summed: on a shared machine the CPU seconds are the figure that carries over to an idle one).
A measuring tool, not part of the recipe: it wraps the trainers' ``training_step`` with a timer.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from segzero_train import micro
from segzero_train.micro_sam2 import _targets, draw_batch, loss_fn, predict_low_res

TIMES: dict[str, list[float]] = {}


def _timed(cls: Any, name: str) -> None:
    orig = cls.training_step

    def wrapped(self: Any, *a: Any, **k: Any) -> Any:
        t, c = time.perf_counter(), time.process_time()
        value = orig(self, *a, **k)
        TIMES.setdefault(name, []).append(time.perf_counter() - t)
        TIMES.setdefault(f"{name}_cpu", []).append(time.process_time() - c)
        print(f"{name} step {TIMES[name][-1]:.2f} s wall {TIMES[name + '_cpu'][-1]:.2f} s cpu")
        return value

    cls.training_step = wrapped


def main() -> None:
    import trl
    from transformers import AutoProcessor

    from segzero_train.config import parse_args
    from segzero_train.data import prompt_token_count
    from segzero_train.grpo import train_grpo
    from segzero_train.sft import train_sft

    out = Path(sys.argv[1])
    stages = sys.argv[2].split(",") if len(sys.argv) > 2 else ["sft", "grpo", "sam2"]
    size = int(sys.argv[3]) if len(sys.argv) > 3 else micro.Recipe().image_size
    out.mkdir(parents=True, exist_ok=True)
    r = micro.Recipe(train_size=48, heldout_size=4, image_size=size)
    print(f"torch threads {torch.get_num_threads()}; {r}")
    sets = micro.stage_data(out, r)
    base = micro.stage_base(out, r)
    proc = AutoProcessor.from_pretrained(base)
    query = "the thing I can use to cut the bread"
    print(f"prompt tokens (image included): {prompt_token_count(proc, query, size, micro.FAMILY)}")
    sft = out / f"sft{size}"
    if "sft" in stages:
        _timed(trl.SFTTrainer, "sft")
        shutil.rmtree(sft, ignore_errors=True)
        train_sft(
            base, sets["train"], sft, steps=6, image_size=size, batch_size=r.sft_batch, seed=0,
            use_cpu=True, family=micro.FAMILY,
        )  # fmt: skip
    if "grpo" in stages:
        _timed(trl.GRPOTrainer, "grpo")
        shutil.rmtree(out / "grpo", ignore_errors=True)
        r2 = micro.Recipe(image_size=size, grpo_steps=2, grpo_save_steps=1000)
        model = sft if sft.is_dir() else base
        argv = micro.grpo_argv(r2, model, sets["train"], out / "grpo")
        script, cfg = parse_args(argv, world_size=1)
        train_grpo(script, cfg)
    if "sam2" in stages:
        from segzero_export.micro_sam2 import build_micro_sam2

        torch.manual_seed(0)
        model = build_micro_sam2(mode="train")
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=r.sam2_lr)
        for step in range(4):
            t, c = time.perf_counter(), time.process_time()
            ex = draw_batch(0, step, r.sam2_batch, micro.SCENE_SIZE)
            low_res, iou = predict_low_res(model, ex)
            loss, _ = loss_fn(low_res, iou, _targets(ex))
            opt.zero_grad()
            loss.backward()
            opt.step()
            TIMES.setdefault("sam2", []).append(time.perf_counter() - t)
            TIMES.setdefault("sam2_cpu", []).append(time.process_time() - c)
            print(f"sam2 step {TIMES['sam2'][-1]:.2f} s wall {TIMES['sam2_cpu'][-1]:.2f} s cpu")
    print(json.dumps({k: [round(x, 2) for x in v] for k, v in TIMES.items()}))


if __name__ == "__main__":
    main()
