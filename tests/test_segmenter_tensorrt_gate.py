"""What a Jetson user meets before TensorRT runs, checked without TensorRT: TensorRT < 10
(JetPack 6.0's 8.6) refused up front with a clear reason, stale engines reported with why
(``auto``'s warning, ``doctor``'s engine folders), engines that cannot be loaded falling back
to onnxruntime, and every ``set_tensor_address`` checked."""

from __future__ import annotations

import ast
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from segzero_edge import device, engine_cache
from segzero_edge.cli import main as cli_main
from segzero_edge.errors import TensorRTUnavailable
from segzero_edge.platform import fingerprint, trt
from tests.fixtures.engines import FP, TRT, fake_build, make_engine_bundle

ROOT = Path(__file__).resolve().parents[1]
JETPACK_60_TRT = "8.6.2"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_engine_bundle(tmp_path / "bundle")


@pytest.fixture
def tensorrt_86(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An importable ``tensorrt`` that reports JetPack 6.0's version (no bindings run)."""
    fake = types.ModuleType("tensorrt")
    fake.__version__ = JETPACK_60_TRT  # type: ignore[attr-defined]
    fake.Builder = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(fingerprint, "_FINGERPRINTS", {})  # fingerprints made with it go too
    return fake


@pytest.mark.runtime
@pytest.mark.parametrize(
    ("version", "ok"),
    [("8.6.2", False), ("8.6.12", False), ("9.3.0", False), ("10.0.1", True),
     ("10.3.0.30", True), ("11.0", True), (None, False), ("unknown", False)],
)  # fmt: skip
def test_tensorrt_version_gate(version: str | None, ok: bool) -> None:
    supported, why = trt.tensorrt_supported(version)
    assert supported is ok
    assert (why == "") is ok
    if version == "8.6.2":
        assert "TensorRT 8.6.2 is older than 10.0" in why and "JetPack 6.1" in why


@pytest.mark.runtime
def test_parse_version() -> None:
    assert trt.parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert trt.parse_version("8.6.2a") == (8, 6, 2)
    assert trt.parse_version("v10") == ()


@pytest.mark.runtime
def test_tensorrt_86_is_refused_up_front(tensorrt_86: types.ModuleType) -> None:
    from segzero_edge.segmenter import tensorrt as trt_backend

    with pytest.raises(TensorRTUnavailable, match=r"TensorRT 8\.6\.2 is older than 10\.0"):
        trt.import_tensorrt()
    ok, why = trt_backend.available()
    assert not ok and "older than 10.0" in why and "JetPack 6.0 ships TensorRT 8.6" in why
    with pytest.raises(TensorRTUnavailable, match=r"older than 10\.0"):
        trt_backend.TensorRTSegmenter("enc.plan", "dec.plan")
    assert trt.tensorrt_version() == (JETPACK_60_TRT, "")  # still named (doctor, fingerprint)


@pytest.mark.usefixtures("fixed_fingerprint")
def test_build_engines_on_tensorrt_86_stops_before_any_work(
    tensorrt_86: types.ModuleType, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli_main(["build-engines", str(bundle), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "TensorRT 8.6.2 is older than 10.0" in err and "Traceback" not in err
    assert not (bundle / "engines").exists()  # nothing parsed, nothing written


@pytest.mark.usefixtures("fixed_fingerprint")
def test_stale_engines_say_why(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans, why = engine_cache.check_engines(bundle)
    assert plans is None and f"no TensorRT engines for this device ({FP})" in why
    assert "segzero-edge build-engines" in why
    fake_build(bundle, trt_version="10.3.0.26")
    monkeypatch.setattr(engine_cache, "tensorrt_version", lambda: ("10.3.0.30", ""))
    plans, why = engine_cache.check_engines(bundle)
    assert plans is None
    assert "built with TensorRT 10.3.0.26, this is 10.3.0.30" in why and "rebuild" in why
    monkeypatch.setattr(engine_cache, "tensorrt_version", lambda: ("10.3.0.26", ""))
    plans, why = engine_cache.check_engines(bundle)
    assert plans is not None and why == ""
    assert engine_cache.find_engines(bundle) == (plans[0], plans[1])


@pytest.mark.usefixtures("fixed_fingerprint")
def test_engines_of_another_device_are_named(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_build(bundle)
    other = "orin-sm87-p3767-0005-trt10.3.0-l4t36.4.0"
    (bundle / "engines" / FP).rename(bundle / "engines" / other)
    _, why = engine_cache.check_engines(bundle)
    assert f"engines exist for {other}" in why
    folders = engine_cache.engine_folders(bundle)
    assert [f["folder"] for f in folders] == [FP, other]
    assert folders[0]["this_device"] and folders[0]["state"] == "not built"
    assert folders[1] == {
        "folder": other, "this_device": False, "tensorrt_version": TRT,
        "state": "other device or TensorRT", "engines": {},
    }  # fmt: skip


@pytest.mark.usefixtures("fixed_fingerprint")
def test_doctor_names_each_engine_folder_and_why_stale(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_build(bundle, trt_version="10.3.0.26")
    other = bundle / "engines" / "xavier-sm72-trt8.5.2"
    other.mkdir()
    (other / "engines.json").write_text(json.dumps({"tensorrt_version": "8.5.2"}))
    monkeypatch.setattr(engine_cache, "tensorrt_version", lambda: ("10.3.0.30", ""))
    from segzero_edge.commands import doctor

    monkeypatch.setattr(doctor, "CHECKS", {})  # the engine section only
    assert cli_main(["doctor", "--no-smoke", "--bundle", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert f"engines for this device ({bundle / 'engines' / FP}): stale" in out
    assert out.count("built with TensorRT 10.3.0.26, this is 10.3.0.30") == 2  # both engines
    assert "xavier-sm72-trt8.5.2  TensorRT 8.5.2, other device or TensorRT" in out


def test_doctor_names_the_onnxruntime_providers() -> None:
    import onnxruntime as ort

    from segzero_edge.commands.doctor import check_onnxruntime

    entry = check_onnxruntime()
    assert entry["providers"] == list(ort.get_available_providers())
    assert ", ".join(ort.get_available_providers()) in entry["reason"]


def test_auto_falls_back_when_current_engines_cannot_load(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Engines current by engines.json that TensorRT cannot deserialize: ``auto`` warns with
    why and runs SAM2 on onnxruntime; ``tensorrt`` asked for by name raises."""
    from segzero_edge.segmenter import auto
    from segzero_edge.segmenter import tensorrt as trt_backend

    plans = (tiny_bundle / "engines" / "x" / "sam2_encoder.plan", tiny_bundle / "y.plan")

    class Undeserializable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise trt_backend.EngineLoadError(f"TensorRT 10.3.0 cannot load {plans[0]}")

    monkeypatch.setattr(auto, "tensorrt_status", lambda root: (plans, ""))
    monkeypatch.setattr(trt_backend, "TensorRTSegmenter", Undeserializable)
    with caplog.at_level(logging.WARNING, logger=auto.__name__):
        seg = auto.open_segmenter(tiny_bundle, backend="auto", threads=1)
    try:
        assert seg.name.startswith("onnxruntime-")
    finally:
        seg.close()
    assert "not used: TensorRT 10.3.0 cannot load" in caplog.text
    assert "SAM2 runs on onnxruntime" in caplog.text
    with pytest.raises(trt_backend.EngineLoadError):
        auto.open_segmenter(tiny_bundle, backend="tensorrt")


@pytest.mark.runtime
def test_every_set_tensor_address_is_checked() -> None:
    from segzero_edge.segmenter.trt_engine import bind

    class Context:
        def __init__(self) -> None:
            self.bound: dict[str, int] = {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            if name not in ("image", "image_embed"):
                return False  # what TensorRT does for a name the engine does not have
            self.bound[name] = ptr
            return True

    ctx = Context()
    bind(ctx, "image", 0x1000, "encoder")  # type: ignore[arg-type]
    assert ctx.bound == {"image": 0x1000}
    with pytest.raises(RuntimeError, match=r"encoder engine refused .* for tensor 'imgae'"):
        bind(ctx, "imgae", 0x2000, "encoder")  # type: ignore[arg-type]
    # the runtime calls set_tensor_address only inside bind()
    for rel in (
        "segzero_edge/segmenter/tensorrt.py",
        "segzero_edge/segmenter/memory_tensorrt.py",
        "segzero_edge/segmenter/trt_engine.py",
    ):
        tree = ast.parse((ROOT / rel).read_text())
        callers = [
            fn.name
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef)
            for node in ast.walk(fn)
            if isinstance(node, ast.Attribute) and node.attr == "set_tensor_address"
        ]
        assert set(callers) <= {"bind"}, (rel, callers)


@pytest.mark.runtime
def test_one_tensorrt_logger_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            made.append(severity)

    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.3.0.30"  # type: ignore[attr-defined]
    fake.Builder = object  # type: ignore[attr-defined]
    fake.Logger = Logger  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt, "_TRT_LOGGER", [])
    first = trt.tensorrt_logger()
    assert trt.tensorrt_logger() is first and made == [Logger.WARNING]
    sources = "\n".join(
        (ROOT / rel).read_text()
        for rel in (
            "segzero_edge/segmenter/tensorrt.py",
            "segzero_edge/segmenter/memory_tensorrt.py",
            "segzero_edge/segmenter/trt_engine.py",
            "export/engines.py",
        )
    )
    assert "trt.Logger(" not in sources  # the builder and both runtimes share it


def test_the_tensorrt_ep_profile_follows_the_decoder_batch_axis(tiny_bundle: Path) -> None:
    """The exported decoder has a prompt (batch) axis: the TensorRT EP then gets the 1..16
    prompts profile; a decoder exported before it gets (1, 1, 1) (read from a CPU session)."""
    import onnxruntime as ort

    from segzero_edge.segmenter.onnxruntime import decoder_has_batch_axis

    assert decoder_has_batch_axis(ort, tiny_bundle / "sam2_decoder.onnx") is True


@pytest.mark.runtime
def test_doctor_names_a_too_old_tensorrt(tensorrt_86: types.ModuleType) -> None:
    from segzero_edge.commands.doctor import check_tensorrt

    entry = check_tensorrt()
    assert entry["available"] is False and entry["version"] == JETPACK_60_TRT
    assert "TensorRT 8.6.2 is older than 10.0" in entry["reason"]


def test_doctor_on_a_jetson_says_where_onnxruntime_gpu_comes_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    from segzero_edge.commands.doctor import check_onnxruntime

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(device, "jetson_info", lambda: device.parse_jetson(["nvidia,tegra234"]))
    reason = check_onnxruntime()["reason"]
    assert "providers: CPUExecutionProvider (CPU only: on a Jetson install onnxruntime-gpu" in (
        reason
    )
    assert "NVIDIA's Jetson index" in reason
