"""mmproj GGUF layout (keys, tensor names and values) and the two-file reasoner export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_export.mmproj_gguf import MmprojExportError, convert_mmproj


def _fields(reader: Any) -> dict[str, Any]:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_mmproj_metadata_and_tensors(tiny_qwen_dir: Path, tiny_mmproj: Path) -> None:
    import gguf
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((tiny_qwen_dir / "config.json").read_text())["vision_config"]
    reader = gguf.GGUFReader(tiny_mmproj)
    kv = _fields(reader)
    expected = {
        "general.architecture": "clip",
        "general.type": "mmproj",
        "clip.projector_type": "qwen2.5vl_merger",
        "clip.has_vision_encoder": True,
        "clip.use_silu": True,
        "clip.vision.patch_size": 14,
        "clip.vision.embedding_length": cfg["hidden_size"],
        "clip.vision.feed_forward_length": cfg["intermediate_size"],
        "clip.vision.block_count": cfg["depth"],
        "clip.vision.attention.head_count": cfg["num_heads"],
        "clip.vision.projection_dim": cfg["out_hidden_size"],
        "clip.vision.spatial_merge_size": 2,
        "clip.vision.n_wa_pattern": cfg["fullatt_block_indexes"][0] + 1,
    }
    for key, value in expected.items():
        assert kv.get(key) == value, f"{key}: {kv.get(key)!r} != {value!r}"
    assert kv["clip.vision.attention.layer_norm_epsilon"] == pytest.approx(1e-6)
    assert np.allclose(kv["clip.vision.image_mean"], [0.48145466, 0.4578275, 0.40821073])

    tensors = {t.name: t for t in reader.tensors}
    kinds = ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_gate", "ffn_up", "ffn_down")
    per_block = [f"{n}.{p}" for n in kinds for p in ("weight", "bias")]
    names = {"v.patch_embd.weight", "v.patch_embd.weight.1", "v.post_ln.weight"}
    names |= {f"mm.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    per_block += ["ln1.weight", "ln2.weight"]
    names |= {f"v.blk.{b}.{n}" for b in range(cfg["depth"]) for n in per_block}
    assert set(tensors) == names, set(tensors) ^ names
    print(f"\nmmproj: {len(tensors)} tensors, {len(kv)} keys")

    hf = load_file(tiny_qwen_dir / "model.safetensors")
    conv = hf["visual.patch_embed.proj.weight"].to(torch.float32).numpy()
    for i, name in enumerate(("v.patch_embd.weight", "v.patch_embd.weight.1")):
        t = tensors[name]
        assert t.tensor_type == gguf.GGMLQuantizationType.F16
        got = np.asarray(t.data).reshape(conv[:, :, i].shape)
        np.testing.assert_array_equal(got, conv[:, :, i].astype(np.float16))
    qkv = hf["visual.blocks.1.attn.qkv.bias"].to(torch.float32).numpy()
    h = cfg["hidden_size"]
    for j, part in enumerate("qkv"):
        got = np.asarray(tensors[f"v.blk.1.attn_{part}.bias"].data)
        np.testing.assert_array_equal(got, qkv[j * h : (j + 1) * h])
    assert tensors["v.blk.0.ln1.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def _copy_with_config(src: Path, dst: Path, **vision: Any) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["vision_config"].update(vision)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_mmproj_errors_name_the_problem(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MmprojExportError, match="not found"):
        convert_mmproj(tmp_path / "nope", tmp_path / "m.gguf", progress=False)
    with pytest.raises(MmprojExportError, match="outtype"):
        convert_mmproj(tiny_qwen_dir, tmp_path / "m.gguf", outtype="q4", progress=False)
    bad = _copy_with_config(tiny_qwen_dir, tmp_path / "w", window_size=56)
    with pytest.raises(MmprojExportError, match="window_size 56"):
        convert_mmproj(bad, tmp_path / "m.gguf", progress=False)
    bad = _copy_with_config(tiny_qwen_dir, tmp_path / "f", fullatt_block_indexes=[0, 3])
    with pytest.raises(MmprojExportError, match="fullatt_block_indexes"):
        convert_mmproj(bad, tmp_path / "m.gguf", progress=False)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp*"))


def test_mmproj_f32_outtype(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    import gguf

    path = convert_mmproj(tiny_qwen_dir, tmp_path / "m32.gguf", outtype="f32", progress=False)
    types = {t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types == {gguf.GGMLQuantizationType.F32}


def test_export_reasoner_writes_the_two_bundle_files(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    import gguf

    from segzero_export.reasoner import export_reasoner

    files = export_reasoner(tiny_qwen_dir, tmp_path / "out", progress=False)
    assert set(files) == {"reasoner", "mmproj"}
    assert files["reasoner"].name == "reasoner.gguf" and files["mmproj"].name == "mmproj.gguf"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mmproj.gguf", "reasoner.gguf"]
    ftype = _fields(gguf.GGUFReader(files["reasoner"]))["general.file_type"]
    assert ftype == 15, f"reasoner.gguf file type {ftype}, want 15 (Q4_K_M)"
    sizes = {k: p.stat().st_size for k, p in files.items()}
    print(f"\nexport_reasoner Q4_K_M sizes: {sizes}")

    kept = export_reasoner(
        tiny_qwen_dir, tmp_path / "k", quant="Q8_0", keep_f16=True, progress=False
    )
    assert set(kept) == {"reasoner", "mmproj", "reasoner_f16"} and kept["reasoner_f16"].is_file()
    with pytest.raises(ValueError, match="unknown quantization"):
        export_reasoner(tiny_qwen_dir, tmp_path / "x", quant="Q3_XYZ", progress=False)
