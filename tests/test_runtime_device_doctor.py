"""``segzero-edge doctor``: fingerprint plus every backend with a reason (CPU machine here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segzero_edge.cli import main as cli_main
from segzero_edge.commands import doctor
from segzero_edge.platform import fingerprint, trt
from segzero_edge.platform import gpu as gpu_probes

pytestmark = pytest.mark.runtime

BACKENDS = ("tensorrt", "cuda", "onnxruntime", "llama.cpp", "native")


@pytest.fixture(scope="module")
def report() -> dict:
    return doctor.report()


def test_report_lists_every_backend_with_a_reason(report: dict) -> None:
    print(json.dumps(report, indent=1))
    assert tuple(report["backends"]) == BACKENDS
    for name, entry in report["backends"].items():
        assert isinstance(entry["available"], bool), name
        assert isinstance(entry["reason"], str) and entry["reason"], f"{name}: no reason"
    assert report["device"]["fingerprint"] == fingerprint.device_fingerprint()


def test_report_matches_what_is_installed(report: dict) -> None:
    """onnxruntime and llama.cpp run on CPU here; TensorRT/CUDA only where a GPU is."""
    import llama_cpp
    import onnxruntime as ort

    b = report["backends"]
    assert b["onnxruntime"]["available"] and b["onnxruntime"]["providers"] == list(
        ort.get_available_providers()
    )
    assert b["llama.cpp"]["available"]
    assert b["llama.cpp"]["gpu_offload"] == bool(llama_cpp.llama_supports_gpu_offload())
    gpu, _ = gpu_probes.probe_gpu_cuda_python()
    assert b["cuda"]["available"] == (gpu is not None)
    if trt.load_tensorrt()[0] is None:
        assert not b["tensorrt"]["available"]
        assert "JetPack" in b["tensorrt"]["reason"]
    if gpu is None:
        assert not b["tensorrt"]["available"]
        assert report["device"]["fingerprint"].startswith("cpu-")


def test_native_missing_is_reported_as_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "segzero_edge.native", None)  # import now fails
    entry = doctor.check_native()
    assert entry["available"] is False and entry["reason"].startswith("not built"), entry


def test_a_failing_probe_does_not_take_the_report_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict:
        raise OSError("libfoo.so: cannot open shared object file")

    monkeypatch.setitem(doctor.CHECKS, "cuda", broken)
    rep = doctor.report()
    assert rep["backends"]["cuda"] == {
        "available": False,
        "reason": "probe failed: OSError: libfoo.so: cannot open shared object file",
    }


def test_doctor_json_cli(capsys: pytest.CaptureFixture, tmp_path) -> None:
    assert cli_main(["doctor", "--json", "--bundle", str(tmp_path)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(BACKENDS) <= set(rep["backends"])
    assert rep["engines"]["directory"].endswith(f"engines/{rep['device']['fingerprint']}")
    assert set(rep["engines"]["status"].values()) == {
        f"{tmp_path}/sam2_encoder.onnx missing",
        f"{tmp_path}/sam2_decoder.onnx missing",
    }


def test_doctor_text_cli(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device fingerprint: ")
    for name in BACKENDS:
        assert f"  {name} " in out, name


def test_help_of_both_commands() -> None:
    for cmd in ("doctor", "build-engines"):
        proc = subprocess.run(
            [sys.executable, "-m", "segzero_edge.cli", cmd, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"segzero-edge {cmd}" in proc.stdout
    top = subprocess.run(
        [sys.executable, "-m", "segzero_edge.cli", "--help"], capture_output=True, text=True
    )
    assert "build-engines" in top.stdout and "doctor" in top.stdout


def test_report_has_llama_cpp_features_and_smoke_results(report: dict) -> None:
    """Each native library was loaded and run in a child process; llama.cpp's CPU features
    and extra buffer types come from llama.cpp itself."""
    from segzero_edge.reasoner import llama_system

    assert set(report["smoke"]) == {"llama.cpp", "onnxruntime", "kernels"}
    for name, res in report["smoke"].items():
        assert res["ok"] and not res["died"] and res["returncode"] == 0, (name, res)
    llama = report["llama_cpp"]
    assert llama["cpu_features"] == llama_system.cpu_features()
    assert llama["extra_buffer_types"] == list(llama_system.extra_buffer_types())
    assert llama["use_extra_bufts"] == llama_system.decide_extra_bufts()[0]
    text = doctor.format_text(report)
    assert "llama.cpp system info: CPU : " in text and "llama.cpp extra buffer types: " in text
    assert "smoke-tested in child processes" in text


def test_doctor_names_a_library_that_crashes(crashing_library: Path) -> None:
    """The kernels library segfaults when loaded: doctor survives, names it and the signal,
    does not load it itself, reports the other libraries, and exits 1."""
    env = {**os.environ, "SEGZERO_NATIVE_LIB": str(crashing_library)}
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_edge.cli", "doctor", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    rep = json.loads(proc.stdout)
    kernels = rep["smoke"]["kernels"]
    print(kernels["reason"])
    assert kernels["died"] and kernels["returncode"] == -11
    assert "libsegzero_kernels" in kernels["reason"] and "SIGSEGV (signal 11)" in kernels["reason"]
    assert rep["smoke"]["llama.cpp"]["ok"] and rep["smoke"]["onnxruntime"]["ok"]
    native = rep["backends"]["native"]
    assert not native["available"] and native["reason"].startswith("smoke test failed: ")
    assert rep["backends"]["llama.cpp"]["available"]
