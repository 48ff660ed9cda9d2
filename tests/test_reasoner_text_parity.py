"""Text-model fidelity: HF float32 vs the GGUF under llama.cpp (F16, Q8_0, Q4_K_M).

Figures are printed (run with -s / -rA). Tolerances:
- F16 (F32 KV cache): max |logit diff| <= 2e-3 * max |HF logit|, and top-1 agreement on every
  position whose HF top-1/top-2 margin exceeds twice the measured max diff (where a flip is
  impossible unless the export is wrong); >= 99% top-1 overall.
- Q8_0 / Q4_K_M vs F16: KL(F16 || Q) per position, mean and max below the bounds in KL_BOUNDS
  (random weights quantize worse than trained ones; measured: Q8_0 0.0018/0.0067, Q4_K_M
  0.116/0.49 nats, so the bounds leave about 2-3x headroom).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from segzero_edge.families import build_prompt
from tests.fixtures.reasoner import llama_logits

F16_REL_TOL = 2e-3
FILE_TYPE_NAMES = {"F16": "F16", "Q8_0": "Q8_0", "Q4_K_M": "Q4_K - Medium"}
KL_BOUNDS = {"Q8_0": (0.005, 0.02), "Q4_K_M": (0.25, 1.0)}  # (mean, max) nats


@pytest.fixture(scope="module")
def prompt_ids(tiny_qwen_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    messages = [
        {"role": "user", "content": build_prompt("The red car on the left.", "multi-object")}
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    answer = '<think> the car is red </think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}]'
    return tok(text + answer)["input_ids"]


@pytest.fixture(scope="module")
def hf_logits(tiny_qwen_dir: Path, prompt_ids: list[int]) -> np.ndarray:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt_ids])).logits[0].numpy()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_f16_gguf_matches_hf_logits(
    tiny_text_ggufs: dict[str, Path], prompt_ids: list[int], hf_logits: np.ndarray
) -> None:
    logits, _ = llama_logits(tiny_text_ggufs["F16"], prompt_ids)
    default_kv, _ = llama_logits(tiny_text_ggufs["F16"], prompt_ids, f32_kv_cache=False)
    chunked, _ = llama_logits(tiny_text_ggufs["F16"], prompt_ids, n_batch=48)
    assert logits.shape == hf_logits.shape
    diff = float(np.abs(logits - hf_logits).max())
    diff_default_kv = float(np.abs(default_kv - hf_logits).max())
    diff_chunked = float(np.abs(chunked - hf_logits).max())
    scale = float(np.abs(hf_logits).max())
    top = np.sort(hf_logits, axis=1)
    margin = top[:, -1] - top[:, -2]
    decided = margin > 2 * diff
    agree = logits.argmax(1) == hf_logits.argmax(1)
    msg = (
        f"F16 GGUF vs HF fp32 over {len(prompt_ids)} positions: max|diff|={diff:.4g} "
        f"(F16 KV cache: {diff_default_kv:.4g}; 48-token batches: {diff_chunked:.4g}) "
        f"logit scale={scale:.3g} "
        f"rel={diff / scale:.3g} (tol {F16_REL_TOL}); top-1 {agree.mean():.2%} overall, "
        f"{agree[decided].mean():.2%} on {int(decided.sum())} decided positions"
    )
    print(msg)
    assert max(diff, diff_chunked) <= F16_REL_TOL * scale, msg
    assert agree[decided].all(), msg
    assert agree.mean() >= 0.99, msg


@pytest.mark.parametrize("qtype", list(KL_BOUNDS))
def test_quantized_kl_vs_f16(
    tiny_text_ggufs: dict[str, Path], prompt_ids: list[int], qtype: str
) -> None:
    ref, _ = llama_logits(tiny_text_ggufs["F16"], prompt_ids)
    got, _ = llama_logits(tiny_text_ggufs[qtype], prompt_ids)
    lp, lq = _log_softmax(ref), _log_softmax(got)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    top1 = float((ref.argmax(1) == got.argmax(1)).mean())
    size_ratio = tiny_text_ggufs[qtype].stat().st_size / tiny_text_ggufs["F16"].stat().st_size
    mean_bound, max_bound = KL_BOUNDS[qtype]
    msg = (
        f"{qtype} vs F16 over {len(prompt_ids)} positions: KL mean={kl.mean():.4g} "
        f"max={kl.max():.4g} (bounds {mean_bound}/{max_bound}) top-1={top1:.2%} "
        f"max|diff|={float(np.abs(got - ref).max()):.3g} file size ratio={size_ratio:.3f}"
    )
    print(msg)
    assert kl.mean() <= mean_bound, msg
    assert kl.max() <= max_bound, msg
    assert size_ratio < 0.7, msg


@pytest.mark.parametrize("name", ["F16", "Q8_0", "Q4_K_M"])
def test_llama_cpp_loads_without_warnings(
    tiny_text_ggufs: dict[str, Path], prompt_ids: list[int], name: str
) -> None:
    _, log = llama_logits(tiny_text_ggufs[name], prompt_ids[:8], f32_kv_cache=False)
    text = "".join(t for _, t in log)
    problems = [t.strip() for level, t in log if level in ("warn", "error")]
    print(f"{name}: {len(log)} llama.cpp log lines, warnings/errors: {problems}")
    assert re.search(r"arch\s+= qwen2vl", text), "llama.cpp did not report arch qwen2vl"
    assert re.search(r"mrope sections\s+= \[8, 12, 12, 0\]", text), "M-RoPE sections not read"
    assert re.search(r"file type\s+= " + FILE_TYPE_NAMES[name], text), "wrong file type"
    assert re.search(r"layer_norm_rms_epsilon f32\s+= 0\.000001", text), "eps not in the dump"
    assert not problems, problems
    unknown = [t for _, t in log if "unknown" in t.lower() and "rope_finetuned" not in t]
    assert not unknown, unknown


def test_token_by_token_decoding_matches_hf(
    tiny_text_ggufs: dict[str, Path], prompt_ids: list[int], hf_logits: np.ndarray
) -> None:
    """One token per llama_decode call, as in generation: KV cache and M-RoPE positions."""
    n = 96  # causal: the first n positions of the full-sequence HF logits are the reference
    logits, _ = llama_logits(tiny_text_ggufs["F16"], prompt_ids[:n], n_batch=1)
    ref = hf_logits[:n]
    diff = float(np.abs(logits - ref).max())
    scale = float(np.abs(ref).max())
    agree = float((logits.argmax(1) == ref.argmax(1)).mean())
    msg = (
        f"F16 token-by-token ({n} decode calls) vs HF: max|diff|={diff:.4g} "
        f"(scale {scale:.3g}) top-1={agree:.2%}"
    )
    print(msg)
    assert diff <= F16_REL_TOL * scale, msg
    assert agree >= 0.99, msg


@pytest.mark.xfail(
    strict=True,
    reason="llama.cpp in llama-cpp-python 0.3.36: llama_model_qwen2vl::load_arch_hparams does "
    "not read qwen2vl.attention.layer_norm_rms_epsilon (the QWEN2 fall-through was lost), so "
    "RMSNorm runs with eps=0 instead of 1e-6; negligible for real weights. Strict: when a "
    "llama.cpp upgrade fixes it this test passes and the xfail must be removed.",
)
def test_llama_cpp_reads_rms_norm_eps(tiny_text_ggufs: dict[str, Path]) -> None:
    _, log = llama_logits(tiny_text_ggufs["F16"], [1, 2, 3], f32_kv_cache=False)
    text = "".join(t for _, t in log)
    assert re.search(r"f_norm_rms_eps\s+= 1\.0e-06", text), "llama.cpp ignored the rms eps key"
