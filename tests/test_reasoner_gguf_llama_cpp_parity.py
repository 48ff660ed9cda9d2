"""The exporter's GGUFs against llama.cpp's own converter (``convert_hf_to_gguf.py``).

Reference: the converter of the llama.cpp that the pinned llama-cpp-python vendors, run on the
tiny checkpoint when ``scripts/llama_cpp_converter.sh`` has unpacked it; otherwise the digest
of its output recorded in tests/fixtures/llama_cpp_converter_digest.json (see
tests/fixtures/llama_cpp_converter.py).

Tolerance: none for tensors (same names, types, shapes and bytes) and for the metadata both
files hold (same types and values). The files are not byte-identical as wholes: key and tensor
order differ, and the keys listed in ``KNOWN`` are written by one side only or differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.llama_cpp_converter import gguf_digest, recorded_digests

KNOWN: dict[str, dict[str, set[str]]] = {
    "text": {
        # we state that Qwen2 adds no BOS; llama.cpp leaves it to its qwen2 default (false)
        "ours_only": {"tokenizer.ggml.add_bos_token"},
        # informational: model type, size label ("2.9M"), quantization format version
        "theirs_only": {"general.type", "general.size_label", "general.quantization_version"},
        # llama.cpp title-cases the folder name ("Tiny_Qwen25Vl"); we keep it as it is
        "differ": {"general.name"},
    },
    "mmproj": {
        # llama.cpp's clip.cpp defaults it to 2 for qwen2.5vl_merger; we write it
        "ours_only": {"clip.vision.spatial_merge_size"},
        "theirs_only": {"general.size_label", "general.quantization_version"},
        "differ": {"general.name"},
    },
}


def _compare(ours: dict[str, Any], ref: dict[str, Any], kind: str) -> None:
    t_ours, t_ref = ours["tensors"], ref["tensors"]
    assert set(t_ours) == set(t_ref), (sorted(set(t_ours) ^ set(t_ref)))[:10]
    bad = sorted(n for n in t_ours if t_ours[n] != t_ref[n])
    assert not bad, f"{kind}: tensors differing in type, shape or bytes: {bad[:10]}"
    m_ours, m_ref = ours["metadata"], ref["metadata"]
    assert set(m_ours) - set(m_ref) == KNOWN[kind]["ours_only"]
    assert set(m_ref) - set(m_ours) == KNOWN[kind]["theirs_only"]
    differ = {k for k in set(m_ours) & set(m_ref) if m_ours[k] != m_ref[k]}
    assert differ == KNOWN[kind]["differ"]


@pytest.mark.parametrize("kind", ["text", "mmproj"])
def test_gguf_matches_llama_cpp_converter(
    kind: str,
    tiny_text_ggufs: dict[str, Path],
    tiny_mmproj: Path,
    llama_cpp_reference_ggufs: dict[str, Path] | None,
) -> None:
    ours = gguf_digest(tiny_text_ggufs["F16"] if kind == "text" else tiny_mmproj)
    recorded = recorded_digests()[kind]
    if llama_cpp_reference_ggufs is None:
        ref, source = recorded, "recorded digest of llama.cpp's converter output"
    else:
        ref, source = gguf_digest(llama_cpp_reference_ggufs[kind]), "llama.cpp's converter, live"
        assert ref == recorded, (
            "llama.cpp's converter now writes another file: record it again with "
            "`python -m tests.fixtures.llama_cpp_converter`"
        )
    shared = len(set(ours["metadata"]) & set(ref["metadata"]))
    print(
        f"{kind}: {len(ours['tensors'])} tensors bit-identical, {shared} shared metadata keys "
        f"({len(KNOWN[kind]['differ'])} differing as known) vs {source}"
    )
    _compare(ours, ref, kind)
