"""Qwen3-VL export: the text GGUF (``qwen3vl``) and mmproj (``qwen3vl_merger``) against
llama.cpp's own converter, quantization, and clear errors.

Reference: ``convert_hf_to_gguf.py`` of the llama.cpp the pinned llama-cpp-python vendors, run
live on the tiny Qwen3-VL when ``scripts/llama_cpp_converter.sh`` has unpacked it, otherwise
the digest of its output in tests/fixtures/llama_cpp_converter_qwen3vl_digest.json.
Tolerance: none (same tensor names, types, shapes and bytes; same types and values for every
metadata key both files hold). Keys one side alone writes are listed in ``KNOWN``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.llama_cpp_converter import (
    QWEN3VL_DIGEST_FILE,
    gguf_digest,
    recorded_digests,
)

KNOWN: dict[str, dict[str, set[str]]] = {
    "text": {
        # we state that Qwen2/3 add no BOS; llama.cpp leaves it to its qwen2 default (false)
        "ours_only": {"tokenizer.ggml.add_bos_token"},
        "theirs_only": {"general.type", "general.size_label", "general.quantization_version"},
        "differ": {"general.name"},  # llama.cpp title-cases the folder name
    },
    "mmproj": {
        "ours_only": set(),
        "theirs_only": {"general.size_label", "general.quantization_version"},
        "differ": {"general.name"},
    },
}
# The keys llama.cpp's loaders read for Qwen3-VL (src/llama-model.cpp LLM_ARCH_QWEN3VL,
# tools/mtmd/clip.cpp PROJECTOR_TYPE_QWEN3VL): each must be in our file with the same value.
READ_KEYS = {
    "text": (
        "qwen3vl.block_count",
        "qwen3vl.context_length",
        "qwen3vl.embedding_length",
        "qwen3vl.feed_forward_length",
        "qwen3vl.attention.head_count",
        "qwen3vl.attention.head_count_kv",
        "qwen3vl.attention.key_length",
        "qwen3vl.attention.value_length",
        "qwen3vl.attention.layer_norm_rms_epsilon",
        "qwen3vl.rope.dimension_sections",
        "qwen3vl.rope.freq_base",
        "qwen3vl.n_deepstack_layers",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.eos_token_id",
    ),
    "mmproj": (
        "clip.projector_type",
        "clip.use_gelu",
        "clip.vision.image_size",
        "clip.vision.patch_size",
        "clip.vision.block_count",
        "clip.vision.embedding_length",
        "clip.vision.attention.layer_norm_epsilon",
        "clip.vision.spatial_merge_size",
        "clip.vision.is_deepstack_layers",
        "clip.vision.image_mean",
        "clip.vision.image_std",
    ),
}


@pytest.mark.parametrize("kind", ["text", "mmproj"])
def test_qwen3vl_gguf_matches_llama_cpp_converter(
    kind: str,
    tiny_qwen3vl_text_ggufs: dict[str, Path],
    tiny_qwen3vl_mmproj: Path,
    llama_cpp_reference_qwen3vl_ggufs: dict[str, Path] | None,
) -> None:
    ours = gguf_digest(tiny_qwen3vl_text_ggufs["F16"] if kind == "text" else tiny_qwen3vl_mmproj)
    recorded = recorded_digests(QWEN3VL_DIGEST_FILE)[kind]
    if llama_cpp_reference_qwen3vl_ggufs is None:
        ref, source = recorded, "recorded digest of llama.cpp's converter output"
    else:
        ref = gguf_digest(llama_cpp_reference_qwen3vl_ggufs[kind])
        source = "llama.cpp's converter, live"
        assert ref == recorded, (
            "llama.cpp's converter now writes another file: record it again with "
            "`python -m tests.fixtures.llama_cpp_converter`"
        )
    t_ours, t_ref = ours["tensors"], ref["tensors"]
    assert set(t_ours) == set(t_ref), sorted(set(t_ours) ^ set(t_ref))[:10]
    bad = sorted(n for n in t_ours if t_ours[n] != t_ref[n])
    assert not bad, f"{kind}: tensors differing in type, shape or bytes: {bad[:10]}"
    m_ours, m_ref = ours["metadata"], ref["metadata"]
    for key in READ_KEYS[kind]:
        assert key in m_ours and m_ours[key] == m_ref[key], key
    assert set(m_ours) - set(m_ref) == KNOWN[kind]["ours_only"]
    assert set(m_ref) - set(m_ours) == KNOWN[kind]["theirs_only"]
    differ = {k for k in set(m_ours) & set(m_ref) if m_ours[k] != m_ref[k]}
    assert differ == KNOWN[kind]["differ"]
    print(
        f"\nqwen3vl {kind}: {len(t_ours)} tensors bit-identical, "
        f"{len(set(m_ours) & set(m_ref))} shared metadata keys vs {source}"
    )


def test_qwen3vl_q4_k_m_tensor_types(tiny_qwen3vl_text_ggufs: dict[str, Path]) -> None:
    import gguf

    reader = gguf.GGUFReader(tiny_qwen3vl_text_ggufs["Q4_K_M"])
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert reader.fields["general.architecture"].contents() == "qwen3vl"
    assert reader.fields["qwen3vl.n_deepstack_layers"].contents() == 2
    assert types["blk.0.ffn_gate.weight"] == "Q4_K"
    assert types["blk.0.attn_q_norm.weight"] == types["blk.0.attn_k_norm.weight"] == "F32"
    assert not any(n.endswith(".bias") for n in types), "qwen3vl takes no biases"
    assert set(types.values()) <= {"Q4_K", "Q6_K", "F32"}


def test_qwen3vl_mmproj_q8_0_keeps_position_grid_f32(
    tiny_qwen3vl_dir: Path, tmp_path: Path
) -> None:
    import gguf

    from segzero_export.mmproj_gguf import convert_mmproj

    out = convert_mmproj(
        tiny_qwen3vl_dir, tmp_path / "mmproj-q8.gguf", outtype="q8_0", progress=False
    )
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["v.position_embd.weight"] == "F32"
    assert types["v.blk.0.attn_qkv.weight"] == "Q8_0"
    assert types["v.deepstack.1.fc1.weight"] == "Q8_0"
    assert types["v.patch_embd.weight"] == "F16"


def _edited_copy(src: Path, dst: Path, edit: Any) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_qwen3vl_unsupported_vision_config_is_refused(
    tiny_qwen3vl_dir: Path, tmp_path: Path
) -> None:
    from segzero_export.mmproj_gguf import MmprojExportError, convert_mmproj

    def bad(config: dict[str, Any]) -> None:
        config["vision_config"]["deepstack_visual_indexes"] = [1, 9]
        config["vision_config"]["num_position_embeddings"] = 250

    src = _edited_copy(tiny_qwen3vl_dir, tmp_path / "bad", bad)
    with pytest.raises(MmprojExportError, match=r"deepstack_visual_indexes \[9\].*|not a square"):
        convert_mmproj(src, tmp_path / "out.gguf", progress=False)
    assert not (tmp_path / "out.gguf").exists()


def test_qwen3vl_text_hparams(tiny_qwen3vl_dir: Path) -> None:
    from segzero_export.hf_source import read_config
    from segzero_export.reasoner_gguf import _expected_shapes, gguf_tensor_name, text_hparams

    hp = text_hparams(read_config(tiny_qwen3vl_dir))
    assert (hp.arch, hp.head_dim, hp.n_deepstack) == ("qwen3vl", 64, 2)
    shapes = _expected_shapes(hp)
    assert shapes["blk.2.attn_q_norm.weight"] == (64,)
    assert "blk.0.attn_q.bias" not in shapes
    assert gguf_tensor_name("model.language_model.layers.1.self_attn.k_norm.weight", 3, "qwen3vl")
    with pytest.raises(ValueError, match="unexpected tensor"):
        gguf_tensor_name("model.language_model.layers.0.self_attn.q_proj.bias", 3, "qwen3vl")
