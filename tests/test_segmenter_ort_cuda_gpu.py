"""onnxruntime's CUDA execution provider against its CPU one, on the operators the SAM2 graphs
lean on (Conv, MatMul, LayerNormalization, Softmax, Resize) at opset 18, the bundle's opset.
Skips, saying so, where onnxruntime has no CUDA provider (the CPU package, e.g. a GPU host
without onnxruntime-gpu). ``pytest -m gpu``; ``scripts/gpu_check.sh`` runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

OPSET = 18
ATOL = 2e-3


def small_graph(path: Path) -> Path:
    """x [1, 8, 32, 32] -> Conv 3x3 -> flatten to tokens -> LayerNorm -> MatMul -> Softmax ->
    back to [1, 16, 32, 32] -> bilinear Resize x2: y [1, 16, 64, 64]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (16,)).astype(np.float32), "b"),
        numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), "proj"),
        numpy_helper.from_array(np.array([1, 16, 1024], np.int64), "tokens_shape"),
        numpy_helper.from_array(np.array([1, 16, 32, 32], np.int64), "image_shape"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "tokens_shape"], ["t0"]),
        helper.make_node("Transpose", ["t0"], ["t"], perm=[0, 2, 1]),
        helper.make_node("LayerNormalization", ["t", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "proj"], ["m"]),
        helper.make_node("Softmax", ["m"], ["s"], axis=-1),
        helper.make_node("Transpose", ["s"], ["s2"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["s2", "image_shape"], ["img"]),
        helper.make_node("Resize", ["img", "", "scales"], ["y"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes, "ort_cuda_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 64, 64])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_onnxruntime_cuda_provider_matches_cpu(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        pytest.skip(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (the CPU package; "
            f"providers: {', '.join(available)}): the CUDA-vs-CPU comparison did not run"
        )
    path = small_graph(tmp_path / "check.onnx")
    x = np.random.default_rng(1).normal(0, 1, (1, 8, 32, 32)).astype(np.float32)
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cuda = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    assert cuda.get_providers()[0] == "CUDAExecutionProvider"
    (want,) = cpu.run(None, {"x": x})
    (got,) = cuda.run(None, {"x": x})
    assert got.shape == want.shape == (1, 16, 64, 64)
    assert np.abs(got - want).max() < ATOL
