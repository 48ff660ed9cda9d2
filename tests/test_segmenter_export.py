"""SAM2 -> ONNX export: files, I/O signature, TensorRT-friendly decoder graph, slim == raw."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from segzero_export.sam2_model import infer_config
from segzero_export.sam2_onnx import OPSET, export_sam2

ENCODER_IO = {
    "image": [1, 3, 1024, 1024],
    "high_res_feats_0": [1, 32, 256, 256],
    "high_res_feats_1": [1, 64, 128, 128],
    "image_embed": [1, 256, 64, 64],
}
DECODER_IO = {
    "image_embed": [1, 256, 64, 64],
    "high_res_feats_0": [1, 32, 256, 256],
    "high_res_feats_1": [1, 64, 128, 128],
    "point_coords": ["num_prompts", "num_points", 2],
    "point_labels": ["num_prompts", "num_points"],
    "mask_input": [1, 1, 256, 256],
    "has_mask_input": [1],
    "masks": ["num_prompts", 4, 256, 256],
    "iou_predictions": ["num_prompts", 4],
    "object_score_logits": ["num_prompts", 1],
    "obj_ptr": ["num_prompts", 4, 256],
}
MEMORY_ATTENTION_IO = {
    "image_embed": [1, 256, 64, 64],
    "memory": ["num_memory", 64, 64, 64],
    "memory_tpos": ["num_memory"],
    "obj_ptrs": ["num_obj_ptrs", 256],
    "obj_ptr_tpos": ["num_obj_ptrs"],
    "pix_feat_with_mem": [1, 256, 64, 64],
}
MEMORY_ENCODER_IO = {
    "image_embed": [1, 256, 64, 64],
    "mask_logits": [1, 1, 256, 256],
    "object_score_logits": [1, 1],
    "is_mask_from_pts": [1],
    "maskmem_features": [1, 64, 64, 64],
}
GRAPH_IO = {
    "encoder": ENCODER_IO,
    "decoder": DECODER_IO,
    "memory_attention": MEMORY_ATTENTION_IO,
    "memory_encoder": MEMORY_ENCODER_IO,
}


def io_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    values = list(model.graph.input) + list(model.graph.output)
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values
    }


def op_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


@pytest.mark.parametrize("kind", ["raw", "slim"])
def test_export_signature(sam2_onnx: dict[str, Any], kind: str) -> None:
    paths = sam2_onnx[kind]
    assert set(paths) == set(GRAPH_IO)
    for role, expected in GRAPH_IO.items():
        model = onnx.load(str(paths[role]))
        onnx.checker.check_model(model, full_check=True)
        assert io_shapes(model) == expected, f"{kind} {role}: {io_shapes(model)}"
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert opset >= 17 and opset == OPSET
        counts = op_counts(model)
        size = paths[role].stat().st_size / 2**20
        print(f"{kind} {role}: {sum(counts.values())} nodes, {size:.1f} MiB, {dict(counts)}")
    leftovers = [p.name for p in paths["encoder"].parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("kind", ["raw", "slim"])
@pytest.mark.parametrize("role", ["decoder", "memory_attention", "memory_encoder"])
def test_graph_is_tensorrt_friendly(sam2_onnx: dict[str, Any], kind: str, role: str) -> None:
    """No OneHot, no Tile with data-dependent repeats, no Loop/If/NonZero, no complex or
    64-bit float tensors; upsampling only in the memory encoder (one bilinear Resize, no
    antialias: TensorRT's IResizeLayer)."""
    model = onnx.load(str(sam2_onnx[kind][role]))
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    counts = op_counts(model)
    assert counts["OneHot"] == 0
    assert counts["Upsample"] == 0
    assert counts["Resize"] == (1 if role == "memory_encoder" else 0), dict(counts)
    bad_types = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128, onnx.TensorProto.DOUBLE}
    for init in model.graph.initializer:
        assert init.data_type not in bad_types, (
            f"{role}: initializer {init.name} is {init.data_type}"
        )
    for node in model.graph.node:
        if node.op_type == "Tile":
            assert node.input[1] in constants, f"Tile {node.name} has data-dependent repeats"
        if node.op_type in ("Loop", "If", "NonZero", "Scan"):
            pytest.fail(f"{role} graph has a {node.op_type} node ({node.name})")
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs.get("mode") == b"linear", attrs
            assert attrs.get("antialias", 0) == 0, attrs
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            assert to not in bad_types, f"{role}: Cast {node.name} to type {to}"
    print(f"{kind} {role}: {sum(counts.values())} nodes, {dict(counts)}")


def test_simplified_graphs_match_raw(sam2_onnx: dict[str, Any], sam2_cases, ort_embeddings) -> None:
    """onnxslim output against the unsimplified export, encoder and decoder (B x P = 1 x 1,
    1 x 2, 3 x 5)."""
    import onnxruntime as ort

    def session(kind: str, role: str) -> Any:
        path = str(sam2_onnx[kind][role])
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    raw = session("raw", "encoder").run(None, {"image": sam2_cases[0].sam_input})
    slim = ort_embeddings[0]  # the slim encoder on the same input
    f0, f1, embed = slim.high_res_feats_0, slim.high_res_feats_1, slim.image_embed
    d_enc = max(float(np.abs(a - b).max()) for a, b in zip(raw, (f0, f1, embed), strict=True))
    print(f"encoder slim vs raw: max abs diff {d_enc:.2e}")
    assert d_enc < 1e-4, f"encoder slim vs raw: {d_enc:.2e}"
    decoders = {k: session(k, "decoder") for k in ("raw", "slim")}
    rng = np.random.default_rng(0)
    worst = 0.0
    for b, n in ((1, 1), (1, 2), (3, 5)):
        feeds = {
            "image_embed": embed,
            "high_res_feats_0": f0,
            "high_res_feats_1": f1,
            "point_coords": (rng.random((b, n, 2)) * 1024).astype(np.float32),
            "point_labels": rng.integers(0, 4, (b, n)).astype(np.float32),
            "mask_input": rng.normal(size=(1, 1, 256, 256)).astype(np.float32),
            "has_mask_input": np.array([n % 2], dtype=np.float32),
        }
        outs = [sess.run(None, feeds) for sess in decoders.values()]
        for x, y in zip(*outs, strict=True):
            assert x.shape[0] == b
            worst = max(worst, float(np.abs(x - y).max()))
    print(f"decoder slim vs raw (B x P up to 3 x 5, with/without mask input): max abs {worst:.2e}")
    assert worst < 1e-4, f"decoder slim vs raw: {worst:.2e}"
    print(f"export {sam2_onnx['export_seconds']:.1f} s, onnxslim {sam2_onnx['slim_seconds']:.1f} s")


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("sam2.1_hiera_tiny.pt", "sam2.1_hiera_t"),
        ("sam2.1_hiera_small.pt", "sam2.1_hiera_s"),
        ("sam2.1_hiera_base_plus.pt", "sam2.1_hiera_b+"),
        ("sam2_hiera_large.pt", "sam2_hiera_l"),
        ("sam2_hiera_b+.pt", "sam2_hiera_b+"),
        ("sam2.1_hiera_t.pt", "sam2.1_hiera_t"),
    ],
)
def test_infer_config(name: str, config: str) -> None:
    assert infer_config(name) == config


def test_export_errors(sam2_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export_sam2(tmp_path / "missing.pt", tmp_path / "out", progress=False)
    odd = tmp_path / "weights.pt"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot infer the SAM2 config"):
        export_sam2(odd, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown SAM2 config"):
        export_sam2(sam2_checkpoint, tmp_path / "out", config="sam3_hiera_x", progress=False)
    with pytest.raises(ValueError, match="does not match the SAM2 config"):
        export_sam2(sam2_checkpoint, tmp_path / "out", config="sam2.1_hiera_s", progress=False)
    torch.save({"weights": {}}, tmp_path / "sam2.1_hiera_t.pt")
    with pytest.raises(ValueError, match="not a Meta SAM2 checkpoint"):
        export_sam2(tmp_path / "sam2.1_hiera_t.pt", tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*")), "a failed export left files behind"
