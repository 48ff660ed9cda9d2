"""The reference side: Seg-Zero's inference code path on PyTorch.

Qwen2.5-VL with ``transformers`` ``generate`` (greedy, ``min_new_tokens`` =
``max_new_tokens``: EOS ignored) on the image resized to 840 x 840, then Meta's
``SAM2ImagePredictor``: ``set_image`` + ``predict(box, point, multimask_output=True)``,
keeping the mask with the highest score. Stages are split with hooks, not by changing the code.
"""

from __future__ import annotations

import time
from typing import Any

from .measure import GpuMemorySampler, aggregate, peak_rss_mib, reset_peak_rss
from .workload import BenchInputs


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


def run_reference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm-up + measured iterations of the reference pipeline, stage by stage."""
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
    choice = str(cfg.get("ref_dtype", "auto-float32"))
    if choice.startswith("auto"):
        choice = "bfloat16" if device == "cuda" else choice.removeprefix("auto-")
    if choice not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"unknown reference dtype {choice!r}")
    dtype = getattr(torch, choice)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    img = inp.image()
    hw = img.shape[:2]
    family = get_family(inp.family)
    prompt = family.build_prompt(inp.query)

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
        rows = []
        n_prompt = 0
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(cfg["warmup"] + cfg["iters"]):
            row: dict[str, float] = {}
            timed.transform_s = timed.postprocess_s = 0.0
            t_start = time.perf_counter()
            pil = Image.fromarray(img).resize(
                (REASONER_SIZE, REASONER_SIZE), Image.Resampling.BILINEAR
            )
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
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
            n_prompt = int(inputs["input_ids"].shape[1])
            n_new = int(out.shape[1]) - n_prompt
            assert n_new == steps, f"generate made {n_new} tokens, wanted {steps}"
            row["vision_encode"] = vis["t1"] - vis["t0"]
            row["prefill"] = stamp.times[0] - t - row["vision_encode"]
            row["decode"] = t_end - stamp.times[0]
            row["decode_tokens_per_s"] = inp.decode_tokens / row["decode"]
            with torch.inference_mode(), autocast:
                t = time.perf_counter()
                predictor.set_image(img)
                sync()
                row["preprocess"] += timed.transform_s
                row["sam_encode"] = time.perf_counter() - t - timed.transform_s
                t = time.perf_counter()
                labels = family.sam2.point_labels[:1]  # the one fixed point of the workload
                masks, scores, _ = predictor.predict(
                    point_coords=np.asarray([inp.point()]),
                    point_labels=np.asarray(labels),
                    box=np.asarray(inp.box()),
                    multimask_output=True,
                )
                t_pred = time.perf_counter() - t
            t = time.perf_counter()
            mask = masks[best_mask_index(scores)].astype(bool)
            row["postprocess"] = time.perf_counter() - t + timed.postprocess_s
            row["sam_decode"] = t_pred - timed.postprocess_s
            row["total"] = time.perf_counter() - t_start
            assert mask.shape == hw
            if i >= cfg["warmup"]:
                rows.append(row)
    result: dict[str, Any] = {
        "side": "reference",
        "backends": {
            "reasoner": f"transformers generate ({str(dtype).removeprefix('torch.')}, {device})",
            "segmenter": f"SAM2ImagePredictor ({device})",
        },
        "stats": aggregate(rows),
        "load_s": load_s,
        "prompt_tokens": n_prompt,
        "decode_steps": inp.decode_tokens,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu.peak_mib,
        "gpu_baseline_mib": gpu.baseline_mib,
    }
    if device == "cuda":
        result["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result
