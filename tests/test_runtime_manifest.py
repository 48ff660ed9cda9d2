"""The typed manifest: what the exporter writes reads back unchanged through the one reader,
and each field the reader is given wrong is refused by name (a ``BundleError``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segzero_edge.bundle import load_bundle
from segzero_edge.errors import BundleError
from segzero_edge.layout import MANIFEST
from segzero_edge.manifest import (
    FileEntry,
    Manifest,
    ReasonerManifest,
    SegmenterManifest,
    read_manifest,
)

pytestmark = pytest.mark.runtime

SHA = "0123456789abcdef" * 4

FULL = Manifest(
    schema_version=2,
    created_by="segzero-edge test",
    created_at="2026-01-01T00:00:00+00:00",
    target="orin-nano-8gb",
    family="multi-object",
    reasoner=ReasonerManifest(
        source="Ricky06662/VisionReasoner-7B",
        revision="abc",
        architecture="Qwen2_5_VLForConditionalGeneration",
        quantization="Q4_K_M",
        mmproj_type="q8_0",
        input_size=840,
        image_tokens=900,
        n_ctx=4096,
    ),
    segmenter=SegmenterManifest(
        source="sam2.1_hiera_tiny",
        checkpoint_sha256=SHA,
        variant="sam2.1_hiera_t",
        image_size=1024,
        tracking={"num_maskmem": 7, "mem_dim": 64},
    ),
    memory_gb={"total": 5.5, "budget": 6.0, "target": "orin-nano-8gb", "fits": True},
    files={"reasoner.gguf": FileEntry(size=10, sha256=SHA), "x/y.bin": FileEntry(0, SHA)},
)


def test_every_field_round_trips_through_the_writer_and_the_reader(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    path.write_text(FULL.dumps())
    back = read_manifest(path)
    assert back == FULL
    assert back.reasoner.mmproj_type == "q8_0" and back.segmenter.tracking == {
        "num_maskmem": 7,
        "mem_dim": 64,
    }
    assert json.loads(path.read_text())["reasoner"]["mmproj_type"] == "q8_0"


def test_the_exported_manifest_reads_back_as_written(tiny_bundle: Path) -> None:
    """The exporter wrote the bundle's manifest.json from a Manifest (Manifest.dumps): the
    reader's Manifest writes the same text again, so no field is lost or added."""
    text = (tiny_bundle / MANIFEST).read_text()
    manifest = load_bundle(tiny_bundle).manifest
    assert manifest == read_manifest(tiny_bundle / MANIFEST)
    assert manifest.dumps() == text
    assert manifest.reasoner.mmproj_type in ("f16", "q8_0", "f32")


def _doc() -> dict[str, Any]:
    return FULL.to_json()


BAD: list[tuple[tuple[str, ...], Any, str]] = [
    (("reasoner", "mmproj_type"), 8, r"reasoner\.mmproj_type: expected a string, got 8"),
    (("reasoner", "n_ctx"), 0, r"reasoner\.n_ctx: 0 is below the minimum 1"),
    (("reasoner", "input_size"), "840", r"reasoner\.input_size: expected an integer"),
    (("reasoner", "image_tokens"), 0, r"reasoner\.image_tokens: 0 is below the minimum 1"),
    (("reasoner", "quantization"), None, r"reasoner\.quantization: expected a string, got null"),
    (("segmenter", "checkpoint_sha256"), "ABC", r"segmenter\.checkpoint_sha256: \"ABC\" does"),
    (("segmenter", "image_size"), -1, r"segmenter\.image_size: -1 is below the minimum 1"),
    (("segmenter", "tracking"), [7], r"segmenter\.tracking: expected an object, got list"),
    (("family",), 2, r"family: expected a string, got 2"),
    (("memory_gb",), 5.5, r"memory_gb: expected an object, got 5\.5"),
    (("files", "reasoner.gguf", "size"), -1, r'files\["reasoner\.gguf"\]\.size: -1 is below'),
    (("files", "x/y.bin", "sha256"), 1, r'files\["x/y\.bin"\]\.sha256: expected a string'),
    (("schema_version",), 1.0, r"schema_version: expected an integer, got 1\.0"),
]


@pytest.mark.parametrize(("where", "value", "message"), BAD, ids=[".".join(b[0]) for b in BAD])
def test_each_bad_field_is_a_bundle_error_naming_it(
    tmp_path: Path, where: tuple[str, ...], value: Any, message: str
) -> None:
    doc = _doc()
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path / MANIFEST
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=rf"^{path}: {message}"):
        read_manifest(path)


def test_missing_sections_are_named(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    doc = {k: v for k, v in _doc().items() if k not in ("reasoner", "segmenter")}
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"reasoner: missing \(and 1 more\)"):
        read_manifest(path)


def test_the_writer_refuses_a_manifest_the_reader_would_refuse() -> None:
    bad = Manifest(
        schema_version=2,
        files={"reasoner.gguf": FileEntry(size=1, sha256="not-hex")},
        reasoner=ReasonerManifest(n_ctx=4096),
    )
    with pytest.raises(ValueError, match=r'files\["reasoner\.gguf"\]\.sha256: "not-hex"'):
        bad.dumps()
    with pytest.raises(ValueError, match=r"reasoner\.n_ctx: 0 is below the minimum 1"):
        Manifest(schema_version=2, files=FULL.files, reasoner=ReasonerManifest(n_ctx=0)).dumps()
