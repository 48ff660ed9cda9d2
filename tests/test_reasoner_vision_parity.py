"""Image + prompt fidelity: HF transformers (float32) vs llama.cpp (text GGUF + F16 mmproj).

Figures are printed (run with -s / -rA). Tolerances (llama.cpp with its default F16 KV cache):
- image tokens: llama.cpp's count == the HF processor's == 900 for 840 x 840;
- vision embeddings (mtmd encode output vs HF ``visual(...)``):
  max |diff| <= 2e-3 * max |HF value| (measured ~5e-4);
- logits on every text position after the image (``<|vision_end|>`` ... ``assistant\\n``):
  max |diff| <= 2e-3 * max |HF logit| (measured ~4.5e-4), top-1 identical wherever the HF
  top-1/top-2 margin exceeds twice the measured max diff, >= 99% overall;
- Q8_0 / Q4_K_M text model vs F16 on the same positions: KL(F16 || Q) mean / max below
  KL_BOUNDS (measured: Q8_0 mean 0.0009 / max 0.0017, Q4_K_M 0.092 / 0.18 nats; random weights
  quantize worse than trained ones; the bounds leave about 3-5x headroom).
"""

from __future__ import annotations

from typing import Any

import numpy as np

REL_TOL = 2e-3
KL_BOUNDS = {"Q8_0": (0.005, 0.01), "Q4_K_M": (0.3, 0.6)}  # (mean, max) nats
ALLOWED_WARNINGS = (
    # llama.cpp's advice for Qwen-VL grounding; we pin 900 tokens on purpose (840 x 840 input)
    "require at minimum 1024 image tokens",
    "--image-min-tokens 1024",
    "ggml-org/llama.cpp/issues/16842",
)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_image_token_count_matches_hf(
    llama_vision_runs: dict[str, dict[str, Any]], hf_vision_reference: dict[str, Any]
) -> None:
    run = llama_vision_runs["F16"]
    ref = hf_vision_reference
    print(
        f"\nimage tokens: llama.cpp {run['n_image_tokens']}, HF {ref['n_image_tokens']}; "
        f"prompt tokens: llama.cpp {run['n_prompt_tokens']}, HF {len(ref['input_ids'])}"
    )
    assert run["n_image_tokens"] == ref["n_image_tokens"] == 900
    assert run["n_prompt_tokens"] == len(ref["input_ids"])
    assert run["last_tokens"] == ref["after_ids"], "text after the image tokenizes differently"


def test_load_has_no_unexpected_warnings(llama_vision_runs: dict[str, dict[str, Any]]) -> None:
    for qtype, run in llama_vision_runs.items():
        bad = [w for w in run["load_warnings"] if not any(a in w for a in ALLOWED_WARNINGS)]
        print(f"\n{qtype}: {len(run['load_warnings'])} warning lines, unexpected: {bad}")
        assert not bad, f"{qtype}: llama.cpp warned while loading: {bad}"


def test_vision_embeddings_match_hf(
    llama_vision_runs: dict[str, dict[str, Any]], hf_vision_reference: dict[str, Any]
) -> None:
    got = llama_vision_runs["F16"]["image_embd"]
    want = hf_vision_reference["image_embeds"]
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    print(
        f"\nvision embeddings {got.shape}: max|diff| {diff:.3g}, max|HF| {scale:.3g}, "
        f"rel {diff / scale:.3g} (tol {REL_TOL})"
    )
    assert diff <= REL_TOL * scale, f"vision embedding max|diff| {diff:.3g} > {REL_TOL}*{scale:.3g}"


def test_f16_logits_after_image_match_hf(
    llama_vision_runs: dict[str, dict[str, Any]], hf_vision_reference: dict[str, Any]
) -> None:
    got = llama_vision_runs["F16"]["text_logits"]
    want = hf_vision_reference["after_logits"]
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got - want).max(axis=-1)
    max_diff, scale = float(diff.max()), float(np.abs(want).max())
    top2 = np.sort(want, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    agree = got.argmax(-1) == want.argmax(-1)
    decided = margin > 2 * max_diff
    print(
        f"\nF16 vs HF on {len(got)} positions after the image: max|diff| {max_diff:.3g} "
        f"(mean {float(np.abs(got - want).mean()):.3g}), max|HF| {scale:.3g}, "
        f"rel {max_diff / scale:.3g} (tol {REL_TOL}); top-1 agreement {agree.mean():.4f}, "
        f"on {int(decided.sum())} decided positions {agree[decided].mean():.4f}"
    )
    assert max_diff <= REL_TOL * scale, f"max|logit diff| {max_diff:.3g} > {REL_TOL}*{scale:.3g}"
    assert agree[decided].all(), f"top-1 differs at decided positions {np.where(decided & ~agree)}"
    assert agree.mean() >= 0.99


def test_quantized_kl_vs_f16(llama_vision_runs: dict[str, dict[str, Any]]) -> None:
    ref = _log_softmax(llama_vision_runs["F16"]["text_logits"])
    for qtype, (mean_bound, max_bound) in KL_BOUNDS.items():
        q = _log_softmax(llama_vision_runs[qtype]["text_logits"])
        kl = (np.exp(ref) * (ref - q)).sum(-1)
        top1 = float((ref.argmax(-1) == q.argmax(-1)).mean())
        print(
            f"\n{qtype} vs F16 (image + prompt, {len(kl)} positions): KL mean {kl.mean():.4g}, "
            f"max {kl.max():.4g} nats (bounds {mean_bound}, {max_bound}); top-1 agree {top1:.3f}"
        )
        assert kl.mean() <= mean_bound and kl.max() <= max_bound, f"{qtype} KL too large"
