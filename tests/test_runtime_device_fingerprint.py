"""Device fingerprint: format, Jetson release parsing, GPU probes failing soft (CPU here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from segzero_edge.platform import fingerprint, jetson, report, trt
from segzero_edge.platform import gpu as gpu_probes
from segzero_edge.platform.fingerprint import format_fingerprint, is_valid_fingerprint
from segzero_edge.platform.gpu import GpuInfo, parse_nvidia_smi
from segzero_edge.platform.jetson import parse_tegra_release

pytestmark = pytest.mark.runtime

ORIN_RELEASE = (
    "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
    "DATE: Fri Sep 13 04:36:44 UTC 2024\n# KERNEL_VARIANT: oot\n"
)


@pytest.fixture(autouse=True)
def _fresh_fingerprint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(fingerprint.ENV_FINGERPRINT, raising=False)
    monkeypatch.setattr(fingerprint, "_FINGERPRINTS", {})  # the process cache, for this test


def test_format_jetson_orin() -> None:
    orin = GpuInfo("Orin", (8, 7))
    fp = format_fingerprint(orin, "10.3.0.30", "36.4.0")
    assert fp == "orin-sm87-trt10.3.0-l4t36.4.0"
    assert is_valid_fingerprint(fp)


def test_format_desktop_gpu_and_cpu() -> None:
    h100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
    assert format_fingerprint(h100, "10.13.0.35", None) == "h100-80gb-hbm3-sm90-trt10.13.0"
    assert format_fingerprint(None, None, None, machine="x86_64") == "cpu-x86_64"
    assert format_fingerprint(None, None, None, machine="aarch64") == "cpu-aarch64"
    weird = format_fingerprint(GpuInfo("GeForce RTX/4090 (Ti) ", (8, 9)), None, None)
    assert weird == "rtx-4090-ti-sm89"
    for fp in (weird, "cpu-x86_64"):
        assert is_valid_fingerprint(fp), fp


def test_this_machine_fingerprint_is_filesystem_safe(tmp_path: Path) -> None:
    fp = fingerprint.device_fingerprint()
    print("device fingerprint here:", fp)
    assert is_valid_fingerprint(fp), fp
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", fp)
    (tmp_path / fp).mkdir()  # a real folder name
    gpu, why = gpu_probes.probe_gpu()
    if gpu is None:
        assert fp.startswith("cpu-"), fp
        assert why, "a failed probe must say why"
    else:
        cc = "".join(map(str, gpu.compute_capability))
        assert f"-sm{cc}" in fp


def test_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fingerprint.ENV_FINGERPRINT, "orin-sm87-trt10.3.0-l4t36.4.0")
    assert fingerprint.device_fingerprint() == "orin-sm87-trt10.3.0-l4t36.4.0"
    monkeypatch.setenv(fingerprint.ENV_FINGERPRINT, "../escape")
    with pytest.raises(ValueError, match="not a safe folder name"):
        fingerprint.device_fingerprint()


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "UPPER", "-lead", "x" * 200])
def test_invalid_fingerprints(bad: str) -> None:
    assert not is_valid_fingerprint(bad)


def test_parse_tegra_release(tmp_path: Path) -> None:
    assert parse_tegra_release(ORIN_RELEASE) == "36.4.0"
    assert parse_tegra_release("# R35 (release), REVISION: 5.0, GCID: 1") == "35.5.0"
    assert parse_tegra_release("something else") is None
    path = tmp_path / "nv_tegra_release"
    path.write_text(ORIN_RELEASE)
    assert jetson.l4t_release(path) == ("36.4.0", "")
    release, why = jetson.l4t_release(tmp_path / "missing")
    assert release is None and "not found" in why


def test_parse_nvidia_smi() -> None:
    out = "NVIDIA H100 80GB HBM3, 9.0, 81559 MiB\nNVIDIA A10, 8.6, 23028 MiB\n"
    gpu = parse_nvidia_smi(out)
    assert gpu == GpuInfo("NVIDIA H100 80GB HBM3", (9, 0), 81559 << 20, "nvidia-smi")
    second = parse_nvidia_smi(out, device=1)
    assert second is not None and second.compute_capability == (8, 6)
    assert parse_nvidia_smi(out, device=2) is None
    assert parse_nvidia_smi("No devices were found") is None


def test_probes_fail_soft_without_gpu() -> None:
    gpu, why = gpu_probes.probe_gpu_cuda_python(device=99)
    assert gpu is None and why
    version, why = trt.tensorrt_version()
    assert (version is None) == bool(why)


def test_device_info_has_a_reason_for_every_missing_part() -> None:
    info = report.device_info()
    print("device info:", info)
    assert info["fingerprint"] == fingerprint.device_fingerprint()
    for key, reason in (
        ("gpu", "gpu_reason"),
        ("tensorrt_version", "tensorrt_reason"),
        ("l4t_release", "l4t_reason"),
    ):
        assert (info[key] is None) == bool(info[reason]), f"{key} / {reason}: {info}"


def test_device_modules_are_lean() -> None:
    """Importing the TensorRT-side modules loads no torch / onnxruntime / tensorrt; the
    fingerprint then probes tensorrt (for its version) but still no torch / onnxruntime."""
    code = (
        "import sys\n"
        "import segzero_edge.platform.fingerprint, segzero_edge.platform.report\n"
        "import segzero_edge.device, segzero_edge.engine_cache, segzero_edge.segmenter.tensorrt\n"
        "import segzero_edge.segmenter.memory_tensorrt, segzero_edge.cuda_pixels\n"
        "import segzero_edge.commands.doctor, segzero_export.engines\n"
        "import segzero_export.cli_build_engines\n"
        "heavy = ('torch', 'onnxruntime', 'tensorrt')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "segzero_edge.platform.fingerprint.device_fingerprint()\n"
        "print(sorted(m for m in heavy[:2] if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.split() == ["[]", "[]"], out


# Device-tree "compatible" lists of Orin modules (carrier+module, module, SoC), as Jetson
# Linux writes them; the Orin Nano developer kit with JetPack 6.2 adds a "-super" suffix.
ORIN_COMPATIBLE = {
    "agx-64gb": ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"],
    "agx-32gb": ["nvidia,p3737-0000+p3701-0004", "nvidia,p3701-0004", "nvidia,tegra234"],
    "nx-16gb": ["nvidia,p3768-0000+p3767-0000", "nvidia,tegra234"],
    "nano-4gb": ["nvidia,p3768-0000+p3767-0004", "nvidia,tegra234"],
    "nano-devkit": ["nvidia,p3768-0000+p3767-0005", "nvidia,tegra234"],
    "nano-devkit-super": ["nvidia,p3768-0000+p3767-0005-super", "nvidia,tegra234"],
}


def _fake_jetson(tmp: Path, monkeypatch: pytest.MonkeyPatch, compatible: list[str]) -> None:
    """Device-tree and L4T files of a Jetson, where this module reads them."""
    (tmp / "compatible").write_bytes(b"".join(c.encode() + b"\x00" for c in compatible))
    (tmp / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (tmp / "nv_tegra_release").write_text(ORIN_RELEASE)
    monkeypatch.setattr(jetson, "DEVICE_TREE_COMPATIBLE", tmp / "compatible")
    monkeypatch.setattr(jetson, "DEVICE_TREE_MODEL", tmp / "model")
    monkeypatch.setattr(jetson, "TEGRA_RELEASE", tmp / "nv_tegra_release")
    for module in (fingerprint, report):
        monkeypatch.setattr(module, "tensorrt_version", lambda: ("10.3.0.30", ""))


def test_parse_jetson_modules() -> None:
    got = {k: jetson.parse_jetson(v) for k, v in ORIN_COMPATIBLE.items()}
    assert {k: (j.soc, j.module) for k, j in got.items() if j} == {
        "agx-64gb": ("tegra234", "p3701-0005"),
        "agx-32gb": ("tegra234", "p3701-0004"),
        "nx-16gb": ("tegra234", "p3767-0000"),
        "nano-4gb": ("tegra234", "p3767-0004"),
        "nano-devkit": ("tegra234", "p3767-0005"),
        "nano-devkit-super": ("tegra234", "p3767-0005"),
    }
    assert got["agx-64gb"].sm_count == 16 and got["nano-4gb"].sm_count == 4
    assert got["agx-64gb"].gpu == GpuInfo("Orin", (8, 7), source="device tree")
    assert jetson.parse_jetson(["qcom,sm8550"]) is None
    assert jetson.parse_jetson([]) is None


def test_orin_modules_get_different_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AGX Orin (16 SMs) and an Orin Nano (8 or 4) must not share engines; a "super"
    power mode (clocks only) keeps its engines."""
    fps = {}
    for name, compatible in ORIN_COMPATIBLE.items():
        _fake_jetson(tmp_path, monkeypatch, compatible)
        monkeypatch.setattr(fingerprint, "_FINGERPRINTS", {})
        fps[name] = fingerprint.device_fingerprint()
    print(fps)
    assert fps["agx-64gb"] == "orin-sm87-p3701-0005-trt10.3.0-l4t36.4.0"
    assert fps["nano-devkit"] == fps["nano-devkit-super"]
    assert len(set(fps.values())) == len(fps) - 1
    assert all(is_valid_fingerprint(fp) for fp in fps.values())


def test_jetson_fingerprint_does_not_depend_on_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cuda-python and nvidia-smi (build-engines in a bare venv) and with them (the
    runtime), a Jetson gets the same fingerprint: the device tree names its GPU."""
    _fake_jetson(tmp_path, monkeypatch, ORIN_COMPATIBLE["nano-4gb"])
    monkeypatch.setattr(gpu_probes, "probe_gpu_cuda_python", lambda d=0: (None, "not installed"))
    monkeypatch.setattr(gpu_probes, "probe_gpu_nvidia_smi", lambda d=0: (None, "not found"))
    without = fingerprint.device_fingerprint()
    monkeypatch.setattr(fingerprint, "_FINGERPRINTS", {})
    orin = GpuInfo("Orin", (8, 7), 7 << 30, "cuda-python", sm_count=4)
    monkeypatch.setattr(gpu_probes, "probe_gpu_cuda_python", lambda d=0: (orin, ""))
    assert fingerprint.device_fingerprint() == without == "orin-sm87-p3767-0004-trt10.3.0-l4t36.4.0"
    assert fingerprint.has_gpu_identity() == (True, "")
    info = report.device_info()
    assert info["jetson"] == {
        "soc": "tegra234", "module": "p3767-0004", "module_name": "Jetson Orin Nano 4GB",
        "sm_count": 4,
    }  # fmt: skip
    assert info["cuda_probe"]["sm_count"] == 4 and info["gpu"]["source"] == "device tree"


def test_a_failed_probe_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU found: the next call probes again (the driver may come later); a found GPU is
    cached for the process."""
    for module in (fingerprint, report):
        monkeypatch.setattr(module, "jetson_info", lambda: None)
    monkeypatch.setattr(gpu_probes, "probe_gpu_cuda_python", lambda d=0: (None, "no driver"))
    monkeypatch.setattr(gpu_probes, "probe_gpu_nvidia_smi", lambda d=0: (None, "no nvidia-smi"))
    assert fingerprint.device_fingerprint().startswith("cpu-")
    assert fingerprint.has_gpu_identity() == (False, "no driver; no nvidia-smi")
    a10 = GpuInfo("NVIDIA A10", (8, 6), source="nvidia-smi")
    monkeypatch.setattr(gpu_probes, "probe_gpu_nvidia_smi", lambda d=0: (a10, ""))
    assert fingerprint.device_fingerprint().startswith("a10-sm86")
    monkeypatch.setattr(gpu_probes, "probe_gpu_nvidia_smi", lambda d=0: (None, "gone"))
    assert fingerprint.device_fingerprint().startswith("a10-sm86")  # cached once found
