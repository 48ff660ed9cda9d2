"""TensorRT engine bookkeeping without TensorRT: staleness / rebuild decisions, FP32 layer
selection, the decoder's point profile, and the clear error where TensorRT is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segzero_edge import engine_cache
from segzero_edge.cli import main as cli_main
from segzero_edge.engine_cache import (
    BuildFlags,
    engine_dir,
    find_engines,
    plan_path,
    read_meta,
    stale_reason,
)
from segzero_edge.errors import TensorRTUnavailable
from segzero_edge.fileio import sha256_file
from segzero_edge.layout import SAM2_DECODER, SAM2_ENCODER
from segzero_edge.platform import fingerprint, trt
from segzero_edge.platform import gpu as gpu_probes
from segzero_export import engines
from segzero_export.engines import (
    LayerDesc,
    build_engines,
    matches_pattern,
    record_engine,
    select_fp32_layers,
)
from tests.fixtures.engines import FP, TRT, fake_build, make_engine_bundle

HAVE_TRT = trt.load_tensorrt()[0] is not None
DEFAULT_FLAGS = BuildFlags()
pytestmark = pytest.mark.usefixtures("fixed_fingerprint")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle with two small stand-in ONNX files and a manifest listing them."""
    return make_engine_bundle(tmp_path / "bundle")


def reason(bundle: Path, name: str = SAM2_ENCODER, **kw: Any) -> str | None:
    out = engine_dir(bundle)
    args: dict[str, Any] = {
        "plan": plan_path(out, name),
        "onnx_sha256": engine_cache.onnx_sha256(bundle, f"{name}.onnx"),
        "tensorrt_version": TRT,
        "fingerprint": FP,
        "flags": BuildFlags(),
    }
    args.update(kw)
    return stale_reason(name, read_meta(out), **args)


def test_fresh_engines_are_found(bundle: Path) -> None:
    out = fake_build(bundle)
    assert out == bundle / "engines" / FP
    assert reason(bundle, SAM2_ENCODER) is None and reason(bundle, SAM2_DECODER) is None
    meta = json.loads((out / "engines.json").read_text())
    assert meta["fingerprint"] == FP and meta["tensorrt_version"] == TRT
    assert meta["engines"][SAM2_ENCODER]["flags"]["points_profile"] == [1, 3, 16]
    assert meta["engines"][SAM2_DECODER]["flags"]["prompts_profile"] == [1, 1, 16]
    plans = find_engines(bundle)
    assert plans == (out / "sam2_encoder.plan", out / "sam2_decoder.plan")
    assert engine_cache.engine_status(bundle) == {SAM2_ENCODER: "ok", SAM2_DECODER: "ok"}


def test_nothing_built_yet(bundle: Path) -> None:
    assert find_engines(bundle) is None
    assert "does not exist" in (reason(bundle) or "")


def test_onnx_change_means_rebuild(bundle: Path) -> None:
    fake_build(bundle)
    onnx = bundle / "sam2_decoder.onnx"
    onnx.write_bytes(b"a re-exported decoder")  # manifest no longer matches: hash the file
    assert engine_cache.onnx_sha256(bundle, onnx.name) == sha256_file(onnx)
    assert "sam2_decoder.onnx changed" in (reason(bundle, SAM2_DECODER) or "")
    assert reason(bundle, SAM2_ENCODER) is None
    assert find_engines(bundle) is None


def test_onnx_hash_comes_from_the_manifest(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = manifest["files"]["sam2_encoder.onnx"]
    entry["sha256"] = "f" * 64  # same size: trusted without hashing
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert engine_cache.onnx_sha256(bundle, "sam2_encoder.onnx") == "f" * 64


def test_tensorrt_upgrade_means_rebuild(bundle: Path) -> None:
    fake_build(bundle, trt_version="10.1.0")
    why = reason(bundle, tensorrt_version="10.3.0")
    assert why == "built with TensorRT 10.1.0, this is 10.3.0"
    assert reason(bundle, tensorrt_version=None) is None  # not compared when unknown


def test_other_device_means_rebuild(bundle: Path) -> None:
    fake_build(bundle)
    why = reason(bundle, fingerprint="orin-sm87-trt10.3.0-l4t36.3.0")
    assert why is not None and "built for device" in why


def test_flag_change_means_rebuild_only_when_compared(bundle: Path) -> None:
    fake_build(bundle)
    more_fp32 = BuildFlags(fp32_layers=("type:softmax",))
    assert "build flags changed" in (reason(bundle, flags=more_fp32) or "")
    assert "build flags changed" in (reason(bundle, flags=BuildFlags(fp16=False)) or "")
    assert "build flags changed" in (
        reason(bundle, flags=BuildFlags(points_profile=(1, 3, 8))) or ""
    )
    assert "build flags changed" in (
        reason(bundle, flags=BuildFlags(prompts_profile=(1, 2, 8))) or ""
    )
    assert reason(bundle, flags=None) is None
    assert find_engines(bundle) is not None  # find_engines accepts any flags


def test_truncated_plan_or_bad_meta_means_rebuild(bundle: Path) -> None:
    out = fake_build(bundle)
    plan_path(out, SAM2_ENCODER).write_bytes(b"plan")  # a crash mid-write of an older tool
    assert "bytes" in (reason(bundle, SAM2_ENCODER) or "")
    assert find_engines(bundle) is None
    fake_build(bundle)
    (out / "engines.json").write_text("{not json")
    assert read_meta(out) == {}
    assert "schema" in (reason(bundle) or "")
    assert find_engines(bundle) is None


def test_record_engine_drops_entries_of_another_tensorrt(bundle: Path) -> None:
    out = fake_build(bundle, trt_version="10.1.0")
    meta = read_meta(out)
    record_engine(
        meta, SAM2_ENCODER, plan=plan_path(out, SAM2_ENCODER), onnx_name="sam2_encoder.onnx",
        onnx_sha256="0" * 64, fingerprint=FP, tensorrt_version=TRT, flags=BuildFlags(),
    )  # fmt: skip
    assert set(meta["engines"]) == {SAM2_ENCODER}, "the old decoder entry must not survive"
    assert meta["tensorrt_version"] == TRT


# ------------------------------------------------------------------ FP32 layer selection


def layer_norm_2d_chain() -> list[LayerDesc]:
    """SAM2's hand-written LayerNorm2d as TensorRT imports it, between two convolutions."""
    return [
        LayerDesc("/up/conv/Conv", "CONVOLUTION", True),  # 0
        LayerDesc("/up/ln/ReduceMean", "REDUCE", True, (0,)),  # 1
        LayerDesc("/up/ln/Sub", "ELEMENTWISE", True, (0, 1)),  # 2
        LayerDesc("/up/ln/Pow", "ELEMENTWISE", True, (2,)),  # 3
        LayerDesc("/up/ln/ReduceMean_1", "REDUCE", True, (3,)),  # 4
        LayerDesc("/up/ln/Add", "ELEMENTWISE", True, (4,)),  # 5
        LayerDesc("/up/ln/Sqrt", "UNARY", True, (5,)),  # 6
        LayerDesc("/up/ln/Div", "ELEMENTWISE", True, (2, 6)),  # 7
        LayerDesc("/up/ln/Mul", "ELEMENTWISE", True, (7,)),  # 8 weight: FP16 is fine
        LayerDesc("/up/ln/Add_1", "ELEMENTWISE", True, (8,)),  # 9 bias
        LayerDesc("/up/act/Gelu", "ACTIVATION", True, (9,)),  # 10
        LayerDesc("/blk/norm1/LayerNormalization", "NORMALIZATION", True, (10,)),  # 11
        LayerDesc("/blk/attn/MatMul", "MATRIX_MULTIPLY", True, (11,)),  # 12
        LayerDesc("/blk/attn/Softmax", "SOFTMAX", True, (12,)),  # 13
        LayerDesc("/shape/ReduceProd", "REDUCE", False, ()),  # 14 shape arithmetic
        LayerDesc("/blk/attn/Mul", "ELEMENTWISE", True, (13,)),  # 15
    ]


def test_layer_norm_chain_is_pinned_to_fp32() -> None:
    chosen = select_fp32_layers(layer_norm_2d_chain())
    assert chosen == {1, 2, 3, 4, 5, 6, 7, 11}, sorted(chosen)


# the ONNX ops of the exported SAM2 graphs, as TensorRT's parser imports them
TRT_TYPES = {
    "LayerNormalization": "NORMALIZATION",
    "ReduceMean": "REDUCE",
    "Softmax": "SOFTMAX",
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Equal"), "ELEMENTWISE"),
    **dict.fromkeys(("Sqrt", "Sin", "Cos", "Erf", "Sigmoid"), "UNARY"),
}


def onnx_layers(path: Path) -> tuple[list[LayerDesc], list[str]]:
    """``LayerDesc`` per ONNX node (topological order) and the node op types."""
    import onnx
    from onnx import TensorProto

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    dtypes = {
        v.name: v.type.tensor_type.elem_type
        for v in (*graph.value_info, *graph.output, *graph.input)
    }
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    producer: dict[str, int] = {}
    layers, ops = [], []
    for i, node in enumerate(graph.node):
        layers.append(
            LayerDesc(
                node.name,
                TRT_TYPES.get(node.op_type, node.op_type.upper()),
                all(dtypes.get(o) in floats for o in node.output),
                tuple(producer[x] for x in node.input if x in producer),
            )
        )
        ops.append(node.op_type)
        producer.update(dict.fromkeys(node.output, i))
    return layers, ops


def test_fp32_selection_on_exported_sam2(sam2_onnx) -> None:
    """Every LayerNorm of the real graphs, and only those, is pinned: the encoder's
    LayerNormalization ops, the decoder's too plus its three LayerNorm2d (7 ops each)."""
    for key, n_layernorm, n_layernorm2d in (("encoder", 24, 0), ("decoder", 9, 3)):
        layers, ops = onnx_layers(sam2_onnx["slim"][key])
        chosen = select_fp32_layers(layers)
        counts = {op: sum(ops[i] == op for i in chosen) for op in sorted({ops[i] for i in chosen})}
        print(f"{key}: {len(layers)} nodes, {len(chosen)} pinned to FP32: {counts}")
        expected = {"LayerNormalization": n_layernorm}
        if n_layernorm2d:
            per_module = {"ReduceMean": 2, "Sub": 1, "Pow": 1, "Add": 1, "Sqrt": 1, "Div": 1}
            expected |= {op: n * n_layernorm2d for op, n in per_module.items()}
        assert counts == expected, f"{key}: {counts}"
        assert ops.count("LayerNormalization") == n_layernorm
        modules = {
            layers[i].name.rsplit("/", 1)[0] for i in chosen if ops[i] != "LayerNormalization"
        }
        assert len(modules) == n_layernorm2d, modules


def test_fp32_patterns_add_layers() -> None:
    layers = layer_norm_2d_chain()
    assert 13 in select_fp32_layers(layers, ["type:SOFTMAX"])
    chosen = select_fp32_layers(layers, ["attn"])  # a plain word matches anywhere
    assert {12, 13, 15} <= chosen
    assert select_fp32_layers(layers, ["/up/act/*"]) - select_fp32_layers(layers) == {10}
    assert 14 not in select_fp32_layers(layers, ["*"]), "shape layers are never pinned"


def test_matches_pattern() -> None:
    assert matches_pattern("/sam_mask_decoder/Softmax", "SOFTMAX", ["type:soft*"])
    assert matches_pattern("/image_encoder/neck/Conv", "CONVOLUTION", ["NECK"])
    assert not matches_pattern("/image_encoder/neck/Conv", "CONVOLUTION", ["type:neck"])


def test_decoder_point_profile() -> None:
    # a decoder exported before the batch axis: batch fixed at 1
    lo, opt, hi = engines.dynamic_profile("point_coords", (1, -1, 2), (1, 3, 16))
    assert (lo, opt, hi) == ([1, 1, 2], [1, 3, 2], [1, 16, 2])
    assert engines.dynamic_profile("point_labels", (1, -1), (2, 4, 8))[2] == [1, 8]
    # the batched decoder: prompts (objects of an answer) x points
    lo, opt, hi = engines.dynamic_profile("point_coords", (-1, -1, 2), (1, 3, 16), (1, 2, 8))
    assert (lo, opt, hi) == ([1, 1, 2], [2, 3, 2], [8, 16, 2])
    assert engines.PROMPTS_PROFILE == (1, 1, 16)
    assert engines.dynamic_profile("point_labels", (-1, -1), (1, 3, 16))[2] == [16, 16]
    with pytest.raises(engines.EngineBuildError, match="only the prompt and point"):
        engines.dynamic_profile("image", (-1, 3, 1024, 1024), (1, 3, 16))
    with pytest.raises(engines.EngineBuildError, match="only the prompt and point"):
        engines.dynamic_profile("point_coords", (-1, -1, -1), (1, 3, 16))
    with pytest.raises(ValueError, match="points profile must satisfy"):
        engines.dynamic_profile("point_coords", (1, -1, 2), (4, 3, 16))
    with pytest.raises(ValueError, match="prompts profile must satisfy"):
        engines.dynamic_profile("point_coords", (-1, -1, 2), (1, 3, 16), (0, 1, 4))


# ------------------------------------------------------------------ no TensorRT here


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_engines_says_where_tensorrt_comes_from(bundle: Path) -> None:
    with pytest.raises(TensorRTUnavailable, match="JetPack") as e:
        build_engines(bundle, progress=False)
    print("TensorRTUnavailable:", e.value)
    assert "pip" in str(e.value)
    assert not (bundle / "engines").exists(), "nothing written when TensorRT is missing"


def test_build_engines_checks_the_bundle_first(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bundle folder not found"):
        build_engines(tmp_path / "nope", progress=False)
    (bundle / "sam2_decoder.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"sam2_decoder\.onnx"):
        build_engines(bundle, progress=False)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_cli_build_engines_one_line_error(bundle: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli_main(["build-engines", str(bundle), "--fp32-layers", "type:softmax", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("segzero-edge build-engines: error: TensorRT is not usable here")
    assert "JetPack" in err and "Traceback" not in err


def test_cli_build_engines_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(["build-engines", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in (
        "--fp32-layers",
        "--force",
        "--workspace-mb",
        "--points",
        "--prompts",
        "BUNDLE/engines",
    ):
        assert flag in out, flag


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_segmenter_backend_unavailable_here(bundle: Path) -> None:
    from segzero_edge.segmenter import tensorrt as trt_backend
    from segzero_edge.segmenter.auto import open_segmenter

    ok, why = trt_backend.available()
    assert not ok and "JetPack" in why, why
    with pytest.raises(TensorRTUnavailable, match="JetPack"):
        trt_backend.TensorRTSegmenter(bundle / "a.plan", bundle / "b.plan")
    with pytest.raises(RuntimeError, match=r"'tensorrt' is unavailable: .*JetPack"):
        open_segmenter(bundle, backend="tensorrt")


def test_build_engines_refuses_an_unidentified_gpu(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No device tree GPU, no cuda-python, no nvidia-smi: writing engines under 'cpu-...'
    (where a GPU runtime never looks) is refused before TensorRT is even imported."""
    monkeypatch.delenv(fingerprint.ENV_FINGERPRINT)
    monkeypatch.setattr(fingerprint, "jetson_info", lambda: None)
    monkeypatch.setattr(gpu_probes, "probe_gpu_cuda_python", lambda d=0: (None, "not installed"))
    monkeypatch.setattr(gpu_probes, "probe_gpu_nvidia_smi", lambda d=0: (None, "not found"))
    with pytest.raises(engines.EngineBuildError, match=r"cannot identify .*'cpu-.*cuda-python"):
        build_engines(bundle, progress=False)
    assert not (bundle / "engines").exists()


class RecordingConfig:
    """Stands in for tensorrt.IBuilderConfig (TensorRT cannot be installed here): records
    the timing caches handed to it; rejects caches made "on another device" like TensorRT."""

    def __init__(self, foreign: bytes = b"") -> None:
        self.foreign, self.set_calls = foreign, []  # type: ignore[var-annotated]

    def create_timing_cache(self, data: bytes) -> bytes:
        return bytes(data)

    def set_timing_cache(self, cache: bytes, ignore_mismatch: bool) -> bool:
        self.set_calls.append((cache, ignore_mismatch))
        return ignore_mismatch or cache != self.foreign


def test_timing_cache_is_never_loaded_across_devices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "timing.cache"
    cfg = RecordingConfig()
    assert engines.apply_timing_cache(cfg, path) is False  # none yet: an empty cache
    assert cfg.set_calls == [(b"", False)]
    path.write_bytes(b"timings of this orin")
    cfg = RecordingConfig()
    assert engines.apply_timing_cache(cfg, path) is True
    assert cfg.set_calls == [(b"timings of this orin", False)]
    path.write_bytes(b"timings of an agx")
    cfg = RecordingConfig(foreign=b"timings of an agx")
    assert engines.apply_timing_cache(cfg, path) is False
    assert cfg.set_calls == [(b"timings of an agx", False), (b"", False)]
    assert "made on another device" in caplog.text
