"""The stock side: what an edge developer assembles from the libraries, without this project.

llama-cpp-python's ``Llama`` + ``Qwen25VLChatHandler`` (``create_chat_completion`` with the
image as a PNG data URI, greedy) on the same GGUF pair, the image resized to the same
840 x 840, the same prompt and decode length (end-of-generation suppressed by a logits
processor); then SAM2's ONNX graphs on onnxruntime with default session options, PIL for
the resizes. Stages are split by wrapping library calls, never by changing them.
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.reasoner.defaults import DEFAULT_N_CTX

from .measure import GpuMemorySampler, peak_rss_mib, reset_peak_rss
from .workload import BenchInputs, run_workloads

SAM_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
SAM_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def run_stock(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm-up + measured iterations of each workload on the stock pipeline."""
    import llama_cpp
    import onnxruntime as ort
    from llama_cpp import Llama, LogitsProcessorList
    from llama_cpp import mtmd_cpp as mtmd
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler
    from PIL import Image

    from segzero_edge.families import get_family
    from segzero_edge.layout import REASONER_SIZE, SAM2_DECODER_OUTPUTS, SAM2_SIZE
    from segzero_edge.reasoner.llama_system import ensure_cpu_backend
    from segzero_edge.segmenter.decode import best_mask_index

    inp = BenchInputs(**cfg["inputs"])
    family = get_family(inp.family)
    threads = int(cfg.get("threads") or os.cpu_count() or 1)
    reset_peak_rss()
    with GpuMemorySampler() as gpu:
        t0 = time.perf_counter()
        ensure_cpu_backend()  # llama-cpp-python's Llama loads none in a GGML_BACKEND_DL build
        handler = Qwen25VLChatHandler(clip_model_path=str(cfg["mmproj_gguf"]), verbose=False)
        llm = Llama(
            model_path=str(cfg["reasoner_gguf"]),
            chat_handler=handler,
            n_ctx=int(cfg.get("n_ctx", DEFAULT_N_CTX)),
            n_gpu_layers=int(cfg.get("n_gpu_layers", -1)),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        handler._init_mtmd_context(llm)  # else the first call loads the vision model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = ort.get_available_providers()
        encoder = ort.InferenceSession(str(cfg["sam2_encoder"]), options, providers=providers)
        decoder = ort.InferenceSession(str(cfg["sam2_decoder"]), options, providers=providers)
        load_s = time.perf_counter() - t0
        vocab = llm._model.vocab
        eog = np.array(
            [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)], np.int64
        )

        # time the image chunk (vision encode + decoding its embeddings) and the PNG decode
        split: dict[str, float] = {}
        eval_chunk = mtmd.mtmd_helper_eval_chunk_single

        def timed_eval_chunk(*args: Any) -> Any:
            ctx = llm._ctx.ctx
            llama_cpp.llama_synchronize(ctx)  # the counters update when the work completes
            p0 = llama_cpp.llama_perf_context(ctx).t_p_eval_ms
            t = time.perf_counter()
            rc = eval_chunk(*args)
            llama_cpp.llama_synchronize(ctx)
            split["image_chunk"] = time.perf_counter() - t
            split["image_decode"] = (llama_cpp.llama_perf_context(ctx).t_p_eval_ms - p0) / 1e3
            chunk = args[2]
            split["image_tokens"] = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            split["image_positions"] = mtmd.mtmd_input_chunk_get_n_pos(chunk)
            return rc

        mtmd.mtmd_helper_eval_chunk_single = timed_eval_chunk
        to_bitmap = handler._create_bitmap_from_bytes

        def timed_bitmap(data: bytes) -> Any:
            t = time.perf_counter()
            out = to_bitmap(data)
            split["bitmap"] = time.perf_counter() - t
            return out

        handler._create_bitmap_from_bytes = timed_bitmap  # type: ignore[method-assign]
        features: dict[str, np.ndarray] = {}
        usage: dict[str, int] = {}

        def call(img: np.ndarray, query: str, n_objects: int, new_frame: bool) -> dict[str, float]:
            row: dict[str, float] = {}
            h, w = img.shape[:2]
            t_start = time.perf_counter()
            pil = Image.fromarray(img)
            png = io.BytesIO()
            pil.resize((REASONER_SIZE, REASONER_SIZE), Image.Resampling.BILINEAR).save(png, "PNG")
            url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
            row["preprocess"] = time.perf_counter() - t_start
            stamps: list[float] = []

            def suppress_eog(input_ids: Any, scores: np.ndarray) -> np.ndarray:
                stamps.append(time.perf_counter())
                scores[eog] = -np.inf
                return scores

            t = time.perf_counter()
            res = llm.create_chat_completion(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": url}},
                            {"type": "text", "text": family.build_prompt(query)},
                        ],
                    }
                ],
                max_tokens=inp.decode_tokens + 1,  # the first comes from the prefill's logits
                temperature=0.0,
                repeat_penalty=1.0,
                logits_processor=LogitsProcessorList([suppress_eog]),
            )
            t_end = time.perf_counter()
            got = int(res["usage"]["completion_tokens"])
            if got != inp.decode_tokens + 1:
                raise RuntimeError(f"llama-cpp-python made {got} tokens, not {inp.decode_tokens}+1")
            # usage counts positions: an M-RoPE image advances them by max(rows, cols) only
            usage["prompt_tokens"] = int(
                res["usage"]["prompt_tokens"] - split["image_positions"] + split["image_tokens"]
            )
            usage["image_tokens"] = int(split["image_tokens"])
            row["preprocess"] += split["bitmap"]
            row["vision_encode"] = split["image_chunk"] - split["image_decode"]
            row["prefill"] = stamps[0] - t - row["vision_encode"] - split["bitmap"]
            row["decode"] = t_end - stamps[0]
            row["reason"] = t_end - t
            row["decode_tokens_per_s"] = inp.decode_tokens / row["decode"]
            if new_frame:
                t = time.perf_counter()
                x = pil.resize((SAM2_SIZE, SAM2_SIZE), Image.Resampling.BILINEAR)
                x = (np.asarray(x, np.float32) / 255.0 - SAM_MEAN) / SAM_STD
                x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
                row["preprocess"] += time.perf_counter() - t
                t = time.perf_counter()
                names = [o.name for o in encoder.get_outputs()]
                features.clear()
                features.update(zip(names, encoder.run(None, {"image": x}), strict=True))
                row["sam_encode"] = time.perf_counter() - t
            t = time.perf_counter()
            low_res = []
            scale = np.array([SAM2_SIZE / w, SAM2_SIZE / h], np.float32)
            for p in inp.sam2_prompts(n_objects):  # the family's points and labels
                assert p.box is not None
                x1, y1, x2, y2 = p.box
                coords = np.array([[x1, y1], [x2, y2], *p.points], np.float32) * scale
                labels = np.array([2, 3, *p.labels], np.float32)
                masks, iou = decoder.run(
                    list(SAM2_DECODER_OUTPUTS),  # the graph may also have tracking outputs
                    {
                        **features,
                        "point_coords": coords[None],
                        "point_labels": labels[None],
                        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                        "has_mask_input": np.zeros(1, np.float32),
                    },
                )
                best = 1 + best_mask_index(iou[0, 1:])  # the three multimask outputs
                low_res.append(masks[0, best])
            row["sam_decode"] = time.perf_counter() - t
            t = time.perf_counter()
            mask = np.zeros((h, w), dtype=bool)
            for m in low_res:
                up = Image.fromarray(m.astype(np.float32), "F").resize(
                    (w, h), Image.Resampling.BILINEAR
                )
                mask |= np.asarray(up) > 0
            row["postprocess"] = time.perf_counter() - t
            row["total"] = time.perf_counter() - t_start
            return row

        workloads = run_workloads(call, inp, cfg["warmup"], cfg["iters"])
        mtmd.mtmd_helper_eval_chunk_single = eval_chunk
        llm.close()
    return {
        "side": "stock",
        "timed": "llama_cpp.Llama + Qwen25VLChatHandler, SAM2 ONNX on onnxruntime",
        "backends": {
            "reasoner": f"llama-cpp-python {llama_cpp.__version__} create_chat_completion",
            "segmenter": f"onnxruntime {ort.__version__} ({providers[0]}, default options)",
        },
        "workloads": workloads,
        "load_s": load_s,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "image_tokens": usage.get("image_tokens", 0),
        "decode_steps": inp.decode_tokens,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu.peak_mib,
        "gpu_baseline_mib": gpu.baseline_mib,
        "model_files": {k: str(Path(cfg[k]).name) for k in ("reasoner_gguf", "mmproj_gguf")},
    }
