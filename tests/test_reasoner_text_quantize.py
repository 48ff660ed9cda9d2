"""quantize_gguf: types, atomic output, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from segzero_export.quantize import QTYPES, quantize_gguf


def test_q4_k_m_tensor_types(tiny_text_ggufs: dict[str, Path]) -> None:
    import gguf

    reader = gguf.GGUFReader(tiny_text_ggufs["Q4_K_M"])
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    counts: dict[str, int] = {}
    for name in types.values():
        counts[name] = counts.get(name, 0) + 1
    print(f"Q4_K_M tensor types: {counts}")
    assert types["blk.0.ffn_gate.weight"] == "Q4_K"
    assert types["blk.0.attn_q.bias"] == "F32"
    assert set(types.values()) <= {"Q4_K", "Q6_K", "F32"}
    assert reader.fields["general.file_type"].contents() == QTYPES["Q4_K_M"]


def test_f16_requantize_and_no_temp_left(tiny_text_ggufs: dict[str, Path], tmp_path: Path) -> None:
    out = quantize_gguf(tiny_text_ggufs["F16"], tmp_path / "again.gguf", "f16")
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.gguf"]


def test_unknown_qtype(tiny_text_ggufs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown quantization type 'Q3_XYZ'.*Q4_K_M"):
        quantize_gguf(tiny_text_ggufs["F16"], tmp_path / "x.gguf", "Q3_XYZ")


def test_missing_and_non_gguf_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"GGUF file not found"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "x.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match=r"not a GGUF file"):
        quantize_gguf(junk, tmp_path / "x.gguf")


def test_llama_cpp_failure_is_reported(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 8)
    with pytest.raises(RuntimeError, match=r"llama.cpp failed to quantize"):
        quantize_gguf(truncated, tmp_path / "x.gguf", "Q8_0")
    assert not (tmp_path / "x.gguf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["truncated.gguf"]
