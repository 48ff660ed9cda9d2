"""Bundle export and verification: every damaged bundle is refused with the file named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from segzero_edge.bundle import REQUIRED_FILES, BundleError, load_bundle, sha256_file


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.mark.runtime
def test_exported_manifest_describes_every_file(tiny_bundle: Path) -> None:
    b = load_bundle(tiny_bundle, verify_hashes=True)
    m = b.manifest
    assert m.schema_version == 2 and m.family == "multi-object"
    assert m.reasoner.quantization == "Q4_K_M" and m.reasoner.input_size == 840
    assert set(REQUIRED_FILES) <= set(m.files)
    for name, entry in m.files.items():
        assert entry.size == (tiny_bundle / name).stat().st_size
        assert entry.sha256 == sha256_file(tiny_bundle / name)
    assert m.memory_gb is not None and m.memory_gb["fits"] is True
    assert not [p for p in tiny_bundle.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.runtime
@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_missing_file_is_named(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=f"missing: .*{name}"):
        load_bundle(bundle_copy)


@pytest.mark.runtime
def test_truncated_file_is_named(bundle_copy: Path) -> None:
    path = bundle_copy / "reasoner.gguf"
    _replace(path, path.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"reasoner\.gguf has \d+ bytes.*truncated"):
        load_bundle(bundle_copy)


@pytest.mark.runtime
def test_corrupt_file_is_found_by_hash(bundle_copy: Path) -> None:
    path = bundle_copy / "sam2_decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _replace(path, bytes(data))
    load_bundle(bundle_copy)  # same size: only the hash check can tell
    with pytest.raises(BundleError, match=r"sam2_decoder\.onnx is corrupt"):
        load_bundle(bundle_copy, verify_hashes=True)


@pytest.mark.runtime
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: {**m, "schema_version": 99}, r"schema_version 99, newer"),
        (lambda m: {k: v for k, v in m.items() if k != "files"}, r"manifest\.json: files: missing"),
        (lambda m: [m], "JSON object"),
    ],
)
def test_bad_manifests(bundle_copy: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    mpath = bundle_copy / "manifest.json"
    _replace(mpath, json.dumps(edit(json.loads(mpath.read_text()))).encode())
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


@pytest.mark.runtime
def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{ broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_export_refuses_a_bundle_over_budget_and_writes_nothing(
    tiny_qwen_dir: Path, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segzero_export import targets
    from segzero_export.bundle import BundleTooLarge, export_bundle

    small = targets.Target("tiny-board", "a 100 MB board", 0.1, 0.1, 10, 1, "8.7", "nothing")
    monkeypatch.setitem(targets.TARGETS, "tiny-board", small)
    out = tmp_path / "refused"
    with pytest.raises(BundleTooLarge, match=r"does not fit tiny-board: estimated .* GB"):
        export_bundle(
            tiny_qwen_dir,
            tiny_bundle / "missing.pt",
            out,
            family="multi-object",
            target="tiny-board",
        )
    assert not out.exists()
