"""Qwen3-VL fidelity: HF transformers (float32) vs llama.cpp (qwen3vl text GGUF + F16
qwen3vl_merger mmproj) on the tiny random Qwen3-VL, same image and prompt.

Figures are printed (run with -s / -rA). Tolerances:
- image tokens: llama.cpp's count == the HF processor's == 676 for the 832 x 832 frame of the
  ``qwen3vl-grounding`` family; the text around the image tokenizes to the same ids;
- vision embeddings (libmtmd's encoder output, the merger's and each deepstack merger's
  features side by side, vs HF ``visual(...)``): max |diff| <= 2e-3 * max |HF value|;
- logits of the text-only prompt (F32 KV cache) and of every text position after the image
  (``<|vision_end|>`` ... ``assistant\\n``, F16 KV cache, llama.cpp's default): max |diff| <=
  2e-3 * max |HF logit|, top-1 identical wherever the HF top-1/top-2 margin exceeds twice the
  measured max diff, >= 99% overall;
- Q8_0 / Q4_K_M text model vs F16 on the image prompt: KL(F16 || Q) mean / max below
  KL_BOUNDS (nats).

Measured on a 2-core Zen 4 CPU: text-only max |diff| 0.0098 (rel 8.3e-4); vision embeddings
rel 6.6e-4; after the image max |diff| 0.0053 (rel 5.6e-4), top-1 agreement 99.5% (100% on
the 205 decided positions); KL Q8_0 0.00085 / 0.0021, Q4_K_M 0.059 / 0.10 nats (mean / max).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge.families import QWEN3VL_GROUNDING
from tests.fixtures.reasoner import llama_logits
from tests.fixtures.reasoner_vision import make_test_image

REL_TOL = 2e-3
KL_BOUNDS = {"Q8_0": (0.005, 0.01), "Q4_K_M": (0.3, 0.5)}  # (mean, max) nats
QUERY = "the red car on the left"
RESIZE_SIZE = QWEN3VL_GROUNDING.resize_size


def _image() -> np.ndarray:
    return np.ascontiguousarray(make_test_image()[:RESIZE_SIZE, :RESIZE_SIZE])


@pytest.fixture(scope="module")
def hf_reference(tiny_qwen3vl_dir: Path) -> dict[str, Any]:
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    image = _image()
    prompt = QWEN3VL_GROUNDING.build_prompt(QUERY)
    proc = AutoProcessor.from_pretrained(tiny_qwen3vl_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = proc(text=[text], images=[Image.fromarray(image)], return_tensors="pt")
    text_only = proc.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    text_ids = proc.tokenizer(text_only)["input_ids"]
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3vl_dir, dtype=torch.float32)
    model.eval()
    cfg = model.config
    with torch.no_grad():
        logits = model(**inputs).logits[0].numpy()
        text_logits = model(input_ids=torch.tensor([text_ids])).logits[0].numpy()
        vis = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(cfg.vision_end_token_id)
    embeds = [vis.pooler_output, *vis.deepstack_features]
    return {
        "image": image,
        "prompt": prompt,
        "input_ids": ids,
        "n_image_tokens": ids.count(cfg.image_token_id),
        "after_ids": ids[start:],
        "after_logits": logits[start:],
        "image_embeds": np.concatenate([e.float().numpy() for e in embeds], axis=-1),
        "text_ids": text_ids,
        "text_logits": text_logits,
    }


def _prefill(model: Path, mmproj: Path, image: np.ndarray, prompt: str) -> dict[str, Any]:
    from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner
    from tests.fixtures.reasoner_vision import tokens_after_image

    opts = {"n_ctx": 4096, "n_gpu_layers": 0, "n_threads": 2, "warmup": False}
    with LlamaCppReasoner(model, mmproj, image_tokens=QWEN3VL_GROUNDING.image_tokens, **opts) as r:
        res = r.prompt_logits(image, prompt)
        res["last_tokens"] = tokens_after_image(r, prompt)
        res["arch"], res["resize_size"] = r.arch, r.resize_size
    return res


@pytest.fixture(scope="module")
def llama_runs(
    tiny_qwen3vl_text_ggufs: dict[str, Path], tiny_qwen3vl_mmproj: Path, hf_reference: dict
) -> dict[str, dict[str, Any]]:
    from tests.child import run_in_child

    ref = hf_reference
    return {
        qtype: run_in_child(_prefill, path, tiny_qwen3vl_mmproj, ref["image"], ref["prompt"])
        for qtype, path in tiny_qwen3vl_text_ggufs.items()
    }


def _compare(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got - want).max(axis=-1)
    max_diff, scale = float(diff.max()), float(np.abs(want).max())
    top2 = np.sort(want, axis=-1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * max_diff
    agree = got.argmax(-1) == want.argmax(-1)
    print(
        f"\n{what} on {len(got)} positions: max|diff| {max_diff:.3g} "
        f"(mean {float(np.abs(got - want).mean()):.3g}), max|HF| {scale:.3g}, "
        f"rel {max_diff / scale:.3g} (tol {REL_TOL}); top-1 agreement {agree.mean():.4f}, "
        f"on {int(decided.sum())} decided positions {agree[decided].mean():.4f}"
    )
    assert max_diff <= REL_TOL * scale, f"max|logit diff| {max_diff:.3g} > {REL_TOL}*{scale:.3g}"
    assert agree[decided].all(), f"top-1 differs at decided positions {np.where(decided & ~agree)}"
    assert agree.mean() >= 0.99


def test_qwen3vl_text_logits_match_hf(
    tiny_qwen3vl_text_ggufs: dict[str, Path], hf_reference: dict[str, Any]
) -> None:
    logits, _ = llama_logits(tiny_qwen3vl_text_ggufs["F16"], hf_reference["text_ids"])
    _compare(logits, hf_reference["text_logits"], "qwen3vl F16 vs HF, text-only prompt")


def test_qwen3vl_image_tokens_and_prompt_match_hf(
    llama_runs: dict[str, dict[str, Any]], hf_reference: dict[str, Any]
) -> None:
    run, ref = llama_runs["F16"], hf_reference
    print(
        f"\nqwen3vl image tokens: llama.cpp {run['n_image_tokens']}, HF {ref['n_image_tokens']}; "
        f"prompt tokens: llama.cpp {run['n_prompt_tokens']}, HF {len(ref['input_ids'])}"
    )
    assert (run["arch"], run["resize_size"]) == ("qwen3vl", RESIZE_SIZE)
    assert run["n_image_tokens"] == ref["n_image_tokens"] == QWEN3VL_GROUNDING.image_tokens
    assert run["n_prompt_tokens"] == len(ref["input_ids"])
    assert run["last_tokens"] == ref["after_ids"], "text after the image tokenizes differently"


def test_qwen3vl_vision_embeddings_match_hf(
    llama_runs: dict[str, dict[str, Any]], hf_reference: dict[str, Any]
) -> None:
    got, want = llama_runs["F16"]["image_embd"], hf_reference["image_embeds"]
    assert got.shape == want.shape, (got.shape, want.shape)  # [676, 256 * (1 + 2 deepstack)]
    diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    print(
        f"\nqwen3vl vision embeddings {got.shape} (merger + 2 deepstack): max|diff| {diff:.3g}, "
        f"max|HF| {scale:.3g}, rel {diff / scale:.3g} (tol {REL_TOL})"
    )
    assert diff <= REL_TOL * scale


def test_qwen3vl_logits_after_image_match_hf(
    llama_runs: dict[str, dict[str, Any]], hf_reference: dict[str, Any]
) -> None:
    got = llama_runs["F16"]["text_logits"]
    _compare(got, hf_reference["after_logits"], "qwen3vl F16 vs HF after the image")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_qwen3vl_quantized_kl_vs_f16(llama_runs: dict[str, dict[str, Any]]) -> None:
    ref = _log_softmax(llama_runs["F16"]["text_logits"])
    for qtype, (mean_bound, max_bound) in KL_BOUNDS.items():
        q = _log_softmax(llama_runs[qtype]["text_logits"])
        kl = (np.exp(ref) * (ref - q)).sum(-1)
        print(
            f"\nqwen3vl {qtype} vs F16 ({len(kl)} positions): KL mean {kl.mean():.4g}, "
            f"max {kl.max():.4g} nats (bounds {mean_bound}, {max_bound})"
        )
        assert kl.mean() <= mean_bound and kl.max() <= max_bound, f"{qtype} KL too large"
