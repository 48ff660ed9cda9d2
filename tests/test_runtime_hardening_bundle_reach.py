"""Bundles stay inside themselves: every file the runtime opens (manifest, memory graphs, ONNX
external data) passes the containment, size and hash rules of the listed files; the tracking
settings are bounded and agree with the graphs; ``n_ctx`` holds the family's shortest prompt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from segzero_edge.bundle import BundleError, load_bundle
from segzero_edge.fileio import sha256_file
from segzero_edge.layout import (
    SAM2_DECODER_FILE,
    SAM2_MEMORY_ATTENTION_FILE,
    TRACKING_METADATA_KEY,
)
from segzero_edge.onnx_scan import scan_onnx
from segzero_edge.segmenter.memory import TPOS_INITIALIZER


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def _write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    path = bundle / "manifest.json"
    path.unlink()  # a hard link to the session bundle: replace, never edit in place
    path.write_text(json.dumps(manifest))


def _list(manifest: dict[str, Any], bundle: Path, name: str) -> None:
    path = bundle / name
    manifest["files"][name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}


# --- manifest.json and the memory graphs ---------------------------------------------------


@pytest.mark.runtime
def test_manifest_linked_outside_the_bundle_is_not_read(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(bundle_copy / "manifest.json", outside / "manifest.json")
    (bundle_copy / "manifest.json").unlink()
    (bundle_copy / "manifest.json").symlink_to(outside / "manifest.json")
    with pytest.raises(BundleError, match=r"manifest\.json is a symbolic link to a place outside"):
        load_bundle(bundle_copy)


@pytest.mark.runtime
def test_manifest_linked_inside_the_bundle_is_read(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").rename(bundle_copy / "real-manifest.json")
    (bundle_copy / "manifest.json").symlink_to("real-manifest.json")
    assert load_bundle(bundle_copy).manifest.files


@pytest.mark.runtime
def test_unlisted_memory_graph_linked_outside_is_not_opened(
    bundle_copy: Path, tmp_path: Path
) -> None:
    """A memory graph the manifest does not list was opened as ``root / name`` (a link out
    of the bundle was loaded and used by track()); only listed graphs are opened now."""
    from segzero_edge.bundle_memory import open_memory

    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle_copy / SAM2_MEMORY_ATTENTION_FILE, outside)
    (bundle_copy / SAM2_MEMORY_ATTENTION_FILE).unlink()
    (bundle_copy / SAM2_MEMORY_ATTENTION_FILE).symlink_to(outside)
    manifest = _manifest(bundle_copy)
    del manifest["files"][SAM2_MEMORY_ATTENTION_FILE]
    _write_manifest(bundle_copy, manifest)
    load_bundle(bundle_copy)  # segment() still works: the graph is simply not part of it
    with pytest.raises(BundleError, match=f"does not list {SAM2_MEMORY_ATTENTION_FILE}"):
        open_memory(bundle_copy)


@pytest.mark.runtime
def test_listed_memory_graph_is_size_and_hash_checked(bundle_copy: Path) -> None:
    from segzero_edge.bundle_memory import open_memory

    path = bundle_copy / SAM2_MEMORY_ATTENTION_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    path.unlink()
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 differs"):
        load_bundle(bundle_copy, verify_hashes=True)
    path.unlink()
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(BundleError, match="truncated or replaced"):
        open_memory(bundle_copy)


# --- ONNX external data --------------------------------------------------------------------


def _externalise(bundle: Path, name: str, location: str) -> None:
    """Save the bundle's graph ``name`` with its weights in ``location`` (beside it) and
    list the new graph (only) in the manifest."""
    import onnx

    path = bundle / name
    model = onnx.load(str(path))
    path.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    manifest = _manifest(bundle)
    _list(manifest, bundle, name)
    _write_manifest(bundle, manifest)


def test_external_data_must_be_listed(bundle_copy: Path, tmp_path: Path) -> None:
    _externalise(bundle_copy, SAM2_DECODER_FILE, "decoder.weights")
    refs = scan_onnx(bundle_copy / SAM2_DECODER_FILE).external
    assert refs and {r.location for r in refs} == {"decoder.weights"}
    with pytest.raises(
        BundleError, match=r"keeps its data in 'decoder\.weights', which .* not list"
    ):
        load_bundle(bundle_copy)
    manifest = _manifest(bundle_copy)
    _list(manifest, bundle_copy, "decoder.weights")
    _write_manifest(bundle_copy, manifest)
    load_bundle(bundle_copy, verify_hashes=True)  # listed: loads, hash checked
    weights = bundle_copy / "decoder.weights"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.unlink()
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder\.weights is corrupt"):
        load_bundle(bundle_copy, verify_hashes=True)
    # listed but a link out of the bundle: refused before anything is read
    outside = tmp_path / "weights"
    outside.write_bytes(bytes(data))
    weights.unlink()
    weights.symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(bundle_copy)


def test_external_data_reading_past_its_file_is_refused(bundle_copy: Path) -> None:
    _externalise(bundle_copy, SAM2_DECODER_FILE, "w.bin")
    manifest = _manifest(bundle_copy)
    weights = bundle_copy / "w.bin"
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data[: len(data) // 2])  # truncated, and listed as such
    _list(manifest, bundle_copy, "w.bin")
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match=r"reads bytes up to .* of w\.bin"):
        load_bundle(bundle_copy)


def test_external_data_out_of_the_folder_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    """A location with ``..``: onnxruntime would open it beside the bundle; it cannot be a
    listed name (listed names stay inside), so it is refused."""
    import onnx

    _externalise(bundle_copy, SAM2_DECODER_FILE, "w.bin")
    shutil.move(bundle_copy / "w.bin", tmp_path / "w.bin")
    path = bundle_copy / SAM2_DECODER_FILE
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../w.bin"
    path.unlink()
    onnx.save_model(model, str(path))
    manifest = _manifest(bundle_copy)
    _list(manifest, bundle_copy, SAM2_DECODER_FILE)
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match=r"keeps its data in '\.\./w\.bin'"):
        load_bundle(bundle_copy)


def test_scan_finds_what_onnx_finds(tmp_path: Path) -> None:
    """The scanner against onnx's own reader, on a model with external data in the main
    graph, in an ``If`` branch, in a node attribute and in a function, plus metadata and
    shapes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    def init(name: str, shape: tuple[int, ...]) -> TensorProto:
        return numpy_helper.from_array(np.ones(shape, np.float32), name)

    branch = helper.make_graph(
        [helper.make_node("Identity", ["k"], ["y"])],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [init("k", (4, 4))],
    )
    nodes = [
        helper.make_node("Constant", [], ["c"], value=init("const", (4, 4))),
        helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["x", "w"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 4])],
        [init("w", (7, 4))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {"a": "1", TRACKING_METADATA_KEY: "{}"})
    path = tmp_path / "m.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="w.data", size_threshold=0
    )
    reference = onnx.load(str(path), load_external_data=False)
    want = sorted(t.name for t in _get_all_tensors(reference) if uses_external_data(t))
    got = scan_onnx(path)
    assert sorted(r.tensor for r in got.external) == want and len(want) >= 3
    assert {r.location for r in got.external} == {"w.data"}
    assert got.metadata == {"a": "1", TRACKING_METADATA_KEY: "{}"}
    assert got.initializers["w"] == [7, 4]
    assert got.inputs == {"x": [None, 4], "cond": []} and got.outputs == {"s": [None, 4]}
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError):
        scan_onnx(path)


# --- tracking settings ---------------------------------------------------------------------


def _set_tracking(bundle: Path, **values: Any) -> None:
    manifest = _manifest(bundle)
    manifest["segmenter"]["tracking"].update(values)
    _write_manifest(bundle, manifest)


@pytest.mark.runtime
@pytest.mark.parametrize(
    ("key", "value"),
    [("num_maskmem", 10**8), ("max_obj_ptrs_in_encoder", 10**9), ("mem_dim", 1 << 20)],
)
def test_tracking_settings_are_bounded(bundle_copy: Path, key: str, value: int) -> None:
    """``num_maskmem`` 10**8 loaded, and track + one update did not finish in 180 s."""
    _set_tracking(bundle_copy, **{key: value})
    with pytest.raises(BundleError, match=rf"manifest.json segmenter.tracking: {key} must be"):
        load_bundle(bundle_copy)


@pytest.mark.runtime
@pytest.mark.parametrize(("key", "value"), [("num_maskmem", 5), ("mem_dim", 32)])
def test_tracking_settings_must_match_the_graph(bundle_copy: Path, key: str, value: int) -> None:
    """Settings that disagree with the memory graphs loaded and failed later (or ran past
    the graph's 7 memory slots); they are refused at load, naming the manifest."""
    _set_tracking(bundle_copy, **{key: value})
    with pytest.raises(BundleError, match=rf"manifest.json: segmenter.tracking disagrees.*{key}"):
        load_bundle(bundle_copy)


def test_tracking_settings_against_the_graph_shapes(bundle_copy: Path) -> None:
    """Without the graph's metadata, the manifest's settings meet the graph's shapes: the
    rows of its temporal encoding are its memory slots."""
    import onnx

    path = bundle_copy / SAM2_MEMORY_ATTENTION_FILE
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key != TRACKING_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    path.unlink()
    onnx.save_model(model, str(path))
    assert scan_onnx(path).initializers[TPOS_INITIALIZER] == [7, 64]
    manifest = _manifest(bundle_copy)
    _list(manifest, bundle_copy, SAM2_MEMORY_ATTENTION_FILE)
    _write_manifest(bundle_copy, manifest)
    load_bundle(bundle_copy)  # the settings fit
    _set_tracking(bundle_copy, num_maskmem=9)
    with pytest.raises(
        BundleError, match=r"segmenter.tracking.num_maskmem is 9 but .* \(memory slots\) 7"
    ):
        load_bundle(bundle_copy)
    _set_tracking(bundle_copy, num_maskmem=7, hidden_dim=128)
    with pytest.raises(BundleError, match=r"hidden_dim is 128 but .* obj_ptrs channels 256"):
        load_bundle(bundle_copy)


# --- n_ctx against the family's shortest prompt -------------------------------------------


@pytest.mark.runtime
def test_n_ctx_below_the_shortest_prompt_is_refused_at_load(
    tiny_bundle_runs: Path, tmp_path: Path
) -> None:
    """A manifest n_ctx smaller than the prompt loaded, then every segment() raised a
    ValueError blaming the query; now the load fails naming the manifest's field."""
    from segzero_edge.pipeline import SegZeroEdge
    from tests.fixtures.runtime import _link

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_runs, bundle, copy_function=_link)
    manifest = _manifest(bundle)
    manifest["reasoner"]["n_ctx"] = 512
    _write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match=r"manifest.json: reasoner.n_ctx is \d+ KV cells"):
        SegZeroEdge.from_bundle(bundle, segmenter_backend="onnxruntime", n_gpu_layers=0)
    with pytest.raises(ValueError, match=r"^n_ctx is \d+ KV cells, but the shortest"):
        SegZeroEdge.from_bundle(tiny_bundle_runs, n_ctx=512, n_gpu_layers=0)
