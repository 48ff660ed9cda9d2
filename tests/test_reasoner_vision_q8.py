"""The Q8_0 mmproj: written by gguf-py's quantizer, loaded by libmtmd, close to the F16 one.

Tolerances against the F16 mmproj on the same image (tiny random Qwen2.5-VL): image
embeddings cosine >= 0.999 and relative RMS <= 0.03; text logits after the image cosine
>= 0.999. (Measured: 0.99996, 0.009 and 0.9998.)
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from segzero_bench.vision_encoder import measure
from segzero_export.mmproj_gguf import convert_mmproj


def test_q8_0_mmproj_matches_f16(
    tiny_qwen_dir: Path, tiny_mmproj: Path, tiny_text_ggufs: dict[str, Path], tmp_path: Path
) -> None:
    q8 = convert_mmproj(
        tiny_qwen_dir, tmp_path / "mmproj-q8_0.gguf", outtype="q8_0", progress=False
    )
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(q8)).tensors}
    q8_names = [n for n, t in types.items() if t == gguf.GGMLQuantizationType.Q8_0]
    assert q8_names and all(n.endswith(".weight") for n in q8_names)
    assert types["v.patch_embd.weight"] == gguf.GGMLQuantizationType.F16  # im2col kernel
    assert q8.stat().st_size < tiny_mmproj.stat().st_size
    image = np.random.default_rng(1).integers(0, 256, (840, 840, 3), np.uint8)
    res = measure(tiny_text_ggufs["F16"], {"f16": tiny_mmproj, "q8_0": q8}, [1], 0, image)
    fid = res["q8_0"]["fidelity_vs_f16"]
    print(f"Q8_0 vs F16 mmproj: {fid}")
    assert fid["image_embd_cosine"] >= 0.999 and fid["image_embd_rel_rms"] <= 0.03
    assert fid["text_logits_cosine"] >= 0.999
