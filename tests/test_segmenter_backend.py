"""OrtSegmenter, open_segmenter, the random SAM2 checkpoint, and SAM2 pre-processing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from segzero_edge.backends import Segmenter
from segzero_edge.pixels import preprocess_sam
from segzero_edge.segmenter.auto import open_segmenter, tensorrt_status
from segzero_edge.segmenter.onnxruntime import OrtSegmenter, choose_providers
from tests.fixtures.segmenter import synthetic_image


@pytest.fixture(scope="module")
def bundle_dir(sam2_onnx: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    for path in sam2_onnx["slim"].values():
        os.symlink(path, root / path.name)
    return root


def test_ort_segmenter_protocol(ort_segmenter: OrtSegmenter, ort_embeddings) -> None:
    assert isinstance(ort_segmenter, Segmenter)
    assert ort_segmenter.name == "onnxruntime-cpu"
    emb = ort_embeddings[0]
    coords = np.array([[[100.0, 200.0]]], dtype=np.float32)
    labels = np.ones((1, 1), dtype=np.float32)
    low, iou = ort_segmenter.decode(emb, coords, labels)
    assert low.shape == (1, 4, 256, 256) and iou.shape == (1, 4)
    assert low.dtype == np.float32 and np.isfinite(low).all()
    # a previous low-res mask as input changes the result
    low2, _ = ort_segmenter.decode(emb, coords, labels, mask_input=low[:, 1:2] * 10)
    assert float(np.abs(low2 - low).max()) > 1e-4
    with pytest.raises(ValueError, match=r"encoder input must be \(1, 3, 1024, 1024\)"):
        ort_segmenter.encode(np.zeros((1, 3, 512, 512), np.float32))
    with pytest.raises(ValueError, match=r"point_coords must be \[B, P, 2\]"):
        ort_segmenter.decode(emb, np.zeros((1, 0, 2), np.float32), np.zeros((1, 0), np.float32))
    with pytest.raises(ValueError, match=r"point_coords must be \[B, P, 2\]"):
        ort_segmenter.decode(emb, np.zeros((0, 1, 2), np.float32), np.zeros((0, 1), np.float32))
    with pytest.raises(ValueError, match=r"point_labels must be \[B, P\]"):
        ort_segmenter.decode(emb, coords, np.ones((1, 2), np.float32))
    assert ort_segmenter.max_prompts is None  # the exported graph has a batch axis


def test_ort_segmenter_errors(sam2_onnx: dict[str, Any], tmp_path: Path) -> None:
    enc, dec = sam2_onnx["slim"]["encoder"], sam2_onnx["slim"]["decoder"]
    with pytest.raises(FileNotFoundError, match="decoder ONNX file not found"):
        OrtSegmenter(enc, tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="not available here"):
        OrtSegmenter(enc, dec, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="not a SAM2 graph"):
        OrtSegmenter(dec, enc)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(RuntimeError, match="cannot load"):
        OrtSegmenter(bad, dec)
    avail = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert choose_providers(None, avail) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_open_segmenter(bundle_dir: Path, tmp_path: Path) -> None:
    for backend in ("onnxruntime", "auto"):
        seg = open_segmenter(bundle_dir, backend=backend, threads=1)
        assert isinstance(seg, Segmenter) and seg.name.startswith("onnxruntime-")
        seg.close()
    plans, why = tensorrt_status(bundle_dir)
    if plans is None:  # no TensorRT here: forcing it must say why
        print(f"tensorrt unavailable: {why}")
        assert why
        with pytest.raises(RuntimeError, match="backend 'tensorrt' is unavailable: ") as err:
            open_segmenter(bundle_dir, backend="tensorrt")
        assert why in str(err.value)
    with pytest.raises(ValueError, match="unknown segmenter backend"):
        open_segmenter(bundle_dir, backend="coreml")
    with pytest.raises(FileNotFoundError, match="bundle folder not found"):
        open_segmenter(tmp_path / "missing")
    (tmp_path / "sam2_encoder.onnx").symlink_to(bundle_dir / "sam2_encoder.onnx")
    with pytest.raises(FileNotFoundError, match=r"sam2_decoder\.onnx"):
        open_segmenter(tmp_path, backend="onnxruntime")


def test_random_checkpoint(sam2_checkpoint: Path, sam2_cases, tmp_path: Path) -> None:
    """Meta format, strict load, deterministic in the seed, non-trivial masks."""
    from segzero_export.sam2_model import build_sam2_model
    from segzero_export.tiny_sam2 import build_sam2_checkpoint

    sd = torch.load(sam2_checkpoint, map_location="cpu", weights_only=True)
    assert set(sd) == {"model"} and len(sd["model"]) > 100
    again = torch.load(
        build_sam2_checkpoint(tmp_path / "again.pt", seed=0), map_location="cpu", weights_only=True
    )["model"]
    other = build_sam2_model("sam2.1_hiera_t")  # unseeded: different weights
    key = "sam_mask_decoder.iou_token.weight"
    assert all(torch.equal(sd["model"][k], again[k]) for k in sd["model"])
    assert not torch.equal(sd["model"][key], other.state_dict()[key])
    for case in sam2_cases:
        for i, ref in enumerate(case.results):
            masks, _, _ = ref["multi"]
            frac = (masks > 0).mean(axis=(1, 2))
            print(f"[{case.name} prompt {i}] predictor mask foreground fractions {frac.round(3)}")
            assert ((frac > 0.01) & (frac < 0.99)).all(), f"trivial masks: {frac}"
    with pytest.raises(ValueError, match="unknown SAM2 config"):
        build_sam2_checkpoint(tmp_path / "x.pt", config="sam2.1_hiera_xl")


@pytest.mark.parametrize("hw", [(480, 640), (333, 500), (1024, 1024), (1080, 1920), (1100, 1500)])
def test_preprocess_matches_sam2_transforms(hw: tuple[int, int]) -> None:
    """Up- and down-scaling (SAM2Transforms resizes with antialias) to 1024 x 1024."""
    from sam2.utils.transforms import SAM2Transforms

    image = synthetic_image(*hw, seed=5)
    ref = SAM2Transforms(1024, 0.0)(image)[None].numpy()
    diff = float(np.abs(preprocess_sam(image) - ref).max())
    print(f"preprocess_sam vs SAM2Transforms {hw}: max abs diff {diff:.2e}")
    assert diff < 1e-4, f"{hw}: {diff:.2e}"
