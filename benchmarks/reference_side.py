"""The reference side: Seg-Zero's inference code path on PyTorch.

Qwen2.5-VL with ``transformers`` ``generate`` (greedy, ``min_new_tokens`` =
``max_new_tokens``: EOS ignored) on the image resized to 840 x 840, then Meta's
``SAM2ImagePredictor``: ``set_image`` once per frame + ``predict(box, point,
multimask_output=True)`` per object, keeping each object's mask with the highest score and
OR-ing them (Seg-Zero's ``inference_scripts``). float32 on the CPU (bfloat16 there runs
without matrix units on most CPUs), bfloat16 on CUDA. Stages are split with hooks, not by
changing the code.
"""

from __future__ import annotations

import time
from typing import Any

from .measure import GpuMemorySampler, peak_rss_mib, reset_peak_rss
from .workload import BenchInputs, run_workloads


class _TimedTransforms:
    """Wraps ``SAM2Transforms``: times the image transform and ``postprocess_masks``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.transform_s = 0.0
        self.postprocess_s = 0.0

    def __call__(self, x: Any) -> Any:
        t = time.perf_counter()
        out = self.inner(x)
        self.transform_s += time.perf_counter() - t
        return out

    def postprocess_masks(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = self.inner.postprocess_masks(*args, **kwargs)
        self.postprocess_s += time.perf_counter() - t
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def reference_dtype(choice: str, device: str) -> str:
    """The reference's weight dtype: ``auto`` = float32 on the CPU, bfloat16 on CUDA (float16
    on GPUs without bfloat16); an explicit choice the hardware lacks is refused."""
    import torch

    if choice not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"unknown reference dtype {choice!r}")
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if choice == "auto":
            return "bfloat16" if bf16 else "float16"
        if choice == "bfloat16" and not bf16:
            raise ValueError("this GPU has no bfloat16: use --ref-dtype float16 or float32")
        return choice
    if choice == "auto":
        return "float32"
    if choice == "float16":
        raise ValueError("float16 on the CPU: PyTorch has no fast CPU float16 matmul")
    if choice == "bfloat16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ValueError("this CPU has no bfloat16 instructions (AVX512-BF16 / AMX)")
    return choice


def run_reference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm-up + measured iterations of each workload on the reference pipeline."""
    import numpy as np
    import torch
    from PIL import Image
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from transformers import (
        AutoProcessor,
        LogitsProcessor,
        LogitsProcessorList,
        Qwen2_5_VLForConditionalGeneration,
    )

    from segzero_edge.families import get_family
    from segzero_edge.layout import REASONER_SIZE
    from segzero_edge.segmenter.decode import best_mask_index
    from segzero_export.sam2_model import build_sam2_model

    inp = BenchInputs(**cfg["inputs"])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, reference_dtype(str(cfg.get("ref_dtype", "auto")), device))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    family = get_family(inp.family)

    class Stamp(LogitsProcessor):
        def __init__(self) -> None:
            self.times: list[float] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.times.append(time.perf_counter())
            return scores

    reset_peak_rss()
    with GpuMemorySampler() as gpu:
        t0 = time.perf_counter()
        processor = AutoProcessor.from_pretrained(cfg["hf_dir"])
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(cfg["hf_dir"], dtype=dtype)
        model = model.to(device).eval()  # type: ignore[arg-type]
        sam = build_sam2_model(cfg["sam2_config"], cfg["sam2_checkpoint"]).to(device)
        predictor = SAM2ImagePredictor(sam)
        timed = _TimedTransforms(predictor._transforms)
        predictor._transforms = timed
        load_s = time.perf_counter() - t0
        visual = model.model.visual if hasattr(model, "model") else model.visual
        vis: dict[str, float] = {}
        visual.register_forward_pre_hook(lambda *a: vis.__setitem__("t0", time.perf_counter()))

        def _vis_done(*a: Any) -> None:
            sync()
            vis["t1"] = time.perf_counter()

        visual.register_forward_hook(_vis_done)
        steps = inp.decode_tokens + 1  # prefill gives token 1, then ``decode_tokens`` forwards
        # Seg-Zero runs SAM2 under bfloat16 autocast on CUDA
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
        n_prompt = [0]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def call(img: np.ndarray, query: str, n_objects: int, new_frame: bool) -> dict[str, float]:
            row: dict[str, float] = {}
            timed.transform_s = timed.postprocess_s = 0.0
            t_start = time.perf_counter()
            pil = Image.fromarray(img).resize(
                (REASONER_SIZE, REASONER_SIZE), Image.Resampling.BILINEAR
            )
            messages = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": family.build_prompt(query)},
                    ],
                }
            ]
            text = processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            inputs = processor(text=[text], images=[pil], padding=True, return_tensors="pt")
            inputs = inputs.to(device)
            row["preprocess"] = time.perf_counter() - t_start
            stamp = Stamp()
            with torch.inference_mode():
                t = time.perf_counter()
                out = model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=steps,
                    min_new_tokens=steps,
                    logits_processor=LogitsProcessorList([stamp]),
                )
                sync()
                t_end = time.perf_counter()
            n_prompt[0] = int(inputs["input_ids"].shape[1])
            n_new = int(out.shape[1]) - n_prompt[0]
            assert n_new == steps, f"generate made {n_new} tokens, wanted {steps}"
            row["vision_encode"] = vis["t1"] - vis["t0"]
            row["prefill"] = stamp.times[0] - t - row["vision_encode"]
            row["decode"] = t_end - stamp.times[0]
            row["reason"] = t_end - t
            row["decode_tokens_per_s"] = inp.decode_tokens / row["decode"]
            h, w = img.shape[:2]
            mask = np.zeros((h, w), dtype=bool)
            t_pred = 0.0
            with torch.inference_mode(), autocast:
                if new_frame:  # SAM2ImagePredictor keeps the frame's features between queries
                    t = time.perf_counter()
                    predictor.set_image(img)
                    sync()
                    row["preprocess"] += timed.transform_s
                    row["sam_encode"] = time.perf_counter() - t - timed.transform_s
                    timed.transform_s = 0.0
                chosen = []
                for p in inp.sam2_prompts(n_objects):  # the family's points and labels
                    t = time.perf_counter()
                    masks, scores, _ = predictor.predict(
                        point_coords=np.asarray(p.points, dtype=np.float32),
                        point_labels=np.asarray(p.labels, dtype=np.int64),
                        box=np.asarray(p.box, dtype=np.float32),
                        multimask_output=True,
                    )
                    t_pred += time.perf_counter() - t
                    chosen.append(masks[best_mask_index(scores)])
            t = time.perf_counter()
            for m in chosen:
                mask |= m.astype(bool)
            row["postprocess"] = time.perf_counter() - t + timed.postprocess_s
            row["sam_decode"] = t_pred - timed.postprocess_s - timed.transform_s
            row["preprocess"] += timed.transform_s
            row["total"] = time.perf_counter() - t_start
            assert mask.shape == (h, w)
            return row

        workloads = run_workloads(call, inp, cfg["warmup"], cfg["iters"])
    result: dict[str, Any] = {
        "side": "reference",
        "timed": "transformers generate + SAM2ImagePredictor",
        "backends": {
            "reasoner": f"transformers generate ({str(dtype).removeprefix('torch.')}, {device})",
            "segmenter": f"SAM2ImagePredictor ({device})",
        },
        "workloads": workloads,
        "load_s": load_s,
        "prompt_tokens": n_prompt[0],
        "decode_steps": inp.decode_tokens,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu.peak_mib,
        "gpu_baseline_mib": gpu.baseline_mib,
    }
    if device == "cuda":
        result["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result
