"""Which device this is: GPU, compute capability, TensorRT version, Jetson module and L4T release.

``device_fingerprint()`` names the folder TensorRT engines are stored under
(``bundle/engines/<fingerprint>/``), e.g. ``orin-sm87-p3701-0005-trt10.3.0-l4t36.4.0`` on a
Jetson AGX Orin 64GB or ``cpu-x86_64`` without a GPU. Engines are only valid for the GPU (its
architecture and, TensorRT warns, its model: an AGX Orin has 16 SMs, an Orin Nano 8 or 4) and
the TensorRT version they were built with, so all of them are part of it.

The GPU is identified the same way whichever probe works: on a Jetson from the device tree
(``/proc/device-tree/compatible`` names the SoC, e.g. ``nvidia,tegra234``, and the module,
e.g. ``nvidia,p3737-0000+p3701-0005`` = carrier + module part number), needing neither
cuda-python nor nvidia-smi; elsewhere from cuda-python or nvidia-smi, which report the same
name and compute capability. Every probe fails soft: it returns ``None`` and a reason instead
of raising. A result without a GPU is not cached (a later call probes again).
``$SEGZERO_DEVICE_FINGERPRINT`` overrides the result.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TensorRTUnavailable

ENV_FINGERPRINT = "SEGZERO_DEVICE_FINGERPRINT"
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DEVICE_TREE_COMPATIBLE = Path("/proc/device-tree/compatible")
# Tegra SoC (device-tree "nvidia,<soc>") -> integrated GPU name and compute capability
TEGRA_GPUS = {
    "tegra234": ("Orin", (8, 7)),
    "tegra194": ("Xavier", (7, 2)),
    "tegra186": ("TX2", (6, 2)),
    "tegra210": ("TX1", (5, 3)),
}
# Jetson module part number -> (name, streaming multiprocessors), from NVIDIA's module data
# sheets (CUDA cores / 128); for display only: the fingerprint uses the part number itself.
JETSON_MODULES = {
    "p3701-0000": ("Jetson AGX Orin 32GB", 14),
    "p3701-0004": ("Jetson AGX Orin 32GB", 14),
    "p3701-0005": ("Jetson AGX Orin 64GB", 16),
    "p3701-0008": ("Jetson AGX Orin Industrial", 16),
    "p3767-0000": ("Jetson Orin NX 16GB", 8),
    "p3767-0001": ("Jetson Orin NX 8GB", 8),
    "p3767-0003": ("Jetson Orin Nano 8GB", 8),
    "p3767-0004": ("Jetson Orin Nano 4GB", 4),
    "p3767-0005": ("Jetson Orin Nano 8GB (developer kit)", 8),
}
_COMPAT_SOC = re.compile(r"nvidia,(tegra\d+)$")
_COMPAT_MODULE = re.compile(r"nvidia,(?:p\d{4}-\d{4}\+)?(p\d{4}-\d{4})(?:-[a-z0-9]+)?$")
_SLUG = re.compile(r"[^a-z0-9._]+")
_FINGERPRINT = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as a probe saw it."""

    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int | None = None
    source: str = ""
    sm_count: int | None = None  # streaming multiprocessors (cuda-python reports it)


def slug(text: str) -> str:
    """Lower-case, filesystem-safe (``[a-z0-9._]``): runs of other characters become ``-``."""
    return _SLUG.sub("-", text.lower()).strip("-.") or "unknown"


def short_gpu_name(name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"h100-80gb-hbm3"``; ``"Orin"`` -> ``"orin"``."""
    text = re.sub(r"^(nvidia|tesla|geforce)\s+", "", name.strip(), flags=re.IGNORECASE)
    return slug(text)


def format_fingerprint(
    gpu: GpuInfo | None,
    trt_version: str | None,
    l4t_release: str | None,
    machine: str | None = None,
    module: str | None = None,
) -> str:
    """Join the parts: ``<gpu>-sm<XY>[-<module>][-trt<a.b.c>][-l4t<r>]``, or
    ``cpu-<machine>[...]``; ``module`` is a Jetson module part number (``p3701-0005``)."""
    if gpu is None:
        parts = ["cpu", slug(machine or platform.machine() or "unknown")]
    else:
        major, minor = gpu.compute_capability
        parts = [short_gpu_name(gpu.name), f"sm{major}{minor}"]
        if module:
            parts.append(slug(module))
    if trt_version:
        parts.append("trt" + slug(".".join(trt_version.split(".")[:3])))
    if l4t_release:
        parts.append("l4t" + slug(l4t_release))
    return "-".join(parts)


def is_valid_fingerprint(text: str) -> bool:
    """True for a single safe path component (lower-case letters, digits, ``._-``)."""
    return bool(_FINGERPRINT.match(text)) and text not in (".", "..") and len(text) <= 128


def parse_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.0, ...`` -> ``"36.4.0"``; ``None`` if not that format."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if m is None:
        return None
    return f"{m.group(1)}.{m.group(2).strip('.')}"


def l4t_release(path: Path | None = None) -> tuple[str | None, str]:
    """The Jetson Linux (L4T) release (``/etc/nv_tegra_release``), or ``None`` and why not."""
    path = path or TEGRA_RELEASE
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None, f"{path} not found (not a Jetson)"
    except OSError as e:
        return None, f"{path} unreadable: {e}"
    release = parse_tegra_release(text)
    return (release, "") if release else (None, f"{path} has an unknown format")


def jetson_model(path: Path | None = None) -> str | None:
    """The board name from the device tree (e.g. ``NVIDIA Jetson AGX Orin Developer Kit``)."""
    path = path or DEVICE_TREE_MODEL
    try:
        return path.read_bytes().rstrip(b"\x00\n").decode(errors="replace") or None
    except OSError:
        return None


def read_compatible(path: Path | None = None) -> list[str]:
    """The device tree's ``compatible`` strings (NUL-separated), ``[]`` when there is none."""
    path = path or DEVICE_TREE_COMPATIBLE
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    return [s.decode(errors="replace") for s in raw.split(b"\x00") if s]


@dataclass(frozen=True)
class JetsonInfo:
    """A Jetson as its device tree describes it."""

    soc: str  # "tegra234"
    module: str | None  # module part number, "p3701-0005"
    model: str | None  # board name, "NVIDIA Jetson AGX Orin Developer Kit"

    @property
    def gpu(self) -> GpuInfo | None:
        """The integrated GPU of a known SoC (name and compute capability), else None."""
        if self.soc not in TEGRA_GPUS:
            return None
        name, cc = TEGRA_GPUS[self.soc]
        return GpuInfo(name, cc, source="device tree")

    @property
    def module_name(self) -> str | None:
        return JETSON_MODULES[self.module][0] if self.module in JETSON_MODULES else None

    @property
    def sm_count(self) -> int | None:
        return JETSON_MODULES[self.module][1] if self.module in JETSON_MODULES else None


def parse_jetson(compatible: list[str], model: str | None = None) -> JetsonInfo | None:
    """``["nvidia,p3768-0000+p3767-0005", "nvidia,tegra234"]`` -> soc ``tegra234``, module
    ``p3767-0005`` (the part after ``+`` is the module, before it the carrier board; a
    ``-super`` variant suffix is dropped); ``None`` when no ``nvidia,tegra*`` entry."""
    socs = [m.group(1) for c in compatible if (m := _COMPAT_SOC.match(c))]
    if not socs:
        return None
    modules = [m.group(1) for c in compatible if (m := _COMPAT_MODULE.match(c))]
    return JetsonInfo(soc=socs[0], module=modules[0] if modules else None, model=model)


def jetson_info() -> JetsonInfo | None:
    """This machine's Jetson SoC, module and board from the device tree; None elsewhere."""
    return parse_jetson(read_compatible(), jetson_model())


def load_tensorrt() -> tuple[Any, str]:
    """The ``tensorrt`` module, or ``None`` and why not.

    A bare ``tensorrt/`` folder (e.g. from ``tensorrt-stubs``) imports as an empty namespace
    package; that counts as not installed.
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        return None, f"tensorrt not importable ({e}); it comes with JetPack, not pip"
    except Exception as e:  # a broken install can raise anything at import
        return None, f"tensorrt import failed: {type(e).__name__}: {e}"
    if not hasattr(trt, "Builder") or not getattr(trt, "__version__", None):
        where = ", ".join(getattr(trt, "__path__", [])) or "?"
        return None, (
            f"tensorrt at {where} has no bindings (type stubs only?); "
            "TensorRT comes with JetPack, not pip"
        )
    return trt, ""


def tensorrt_version() -> tuple[str | None, str]:
    """The importable TensorRT's version, or ``None`` and why not."""
    trt, why = load_tensorrt()
    return (None, why) if trt is None else (str(trt.__version__), "")


MIN_TENSORRT = (10, 0)
"""The oldest TensorRT the engine builder and runtime support: they use the TensorRT 10 API
(``create_network()`` is explicit-batch only there, ``set_tensor_address`` /
``execute_async_v3``) and parse opset-18 ONNX graphs. JetPack 6.0 (L4T 36.2 / 36.3) ships
TensorRT 8.6, whose ``create_network(0)`` is an implicit-batch network the ONNX parser
rejects; JetPack 6.1 and 6.2 (L4T 36.4.x) ship TensorRT 10.3."""


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; leading numeric parts only (``"8.6.2a"`` ->
    ``(8, 6, 2)``); ``()`` when it does not start with a number."""
    parts = []
    for piece in text.strip().split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    return tuple(parts)


def tensorrt_supported(version: str | None) -> tuple[bool, str]:
    """Whether TensorRT ``version`` can build and run this project's engines, and why not."""
    if version is None:
        return False, "TensorRT is not installed"
    parsed = parse_version(version)
    if not parsed:
        return False, f"TensorRT reports an unreadable version {version!r}"
    if parsed < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        return False, (
            f"TensorRT {version} is older than {need}, which segzero-edge needs (TensorRT 10 "
            "API, explicit-batch networks, opset-18 graphs); JetPack 6.0 ships TensorRT 8.6: "
            "upgrade to JetPack 6.1 or later (TensorRT 10.3), or run SAM2 on onnxruntime "
            "(--segmenter-backend onnxruntime)"
        )
    return True, ""


def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`TensorRTUnavailable` saying where it comes from or why
    its version cannot be used (older than :data:`MIN_TENSORRT`)."""
    trt, why = load_tensorrt()
    if trt is None:
        raise TensorRTUnavailable(
            f"TensorRT is not usable here: {why}. It comes with JetPack on a Jetson "
            "(apt package python3-libnvinfer; in a venv use --system-site-packages), "
            "not from pip; engines must be built on the device that runs them."
        )
    ok, why = tensorrt_supported(str(trt.__version__))
    if not ok:
        raise TensorRTUnavailable(why)
    return trt


_TRT_LOGGER: list[Any] = []
_TRT_LOGGER_LOCK = threading.Lock()


def tensorrt_logger() -> Any:
    """The process's one ``tensorrt.Logger`` (WARNING and above), shared by every builder and
    runtime: TensorRT treats the logger as a process-wide singleton (its ``ILogger``
    documentation: instances of ``IBuilder`` / ``IRuntime`` must all use the same logger),
    and it must outlive every object made through it. Raises like :func:`import_tensorrt`."""
    trt = import_tensorrt()
    with _TRT_LOGGER_LOCK:
        if not _TRT_LOGGER:
            _TRT_LOGGER.append(trt.Logger(trt.Logger.WARNING))
        return _TRT_LOGGER[0]


def cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or the pre-12.6 ``cuda.cudart``).

    Raises ``ImportError`` when cuda-python is not installed.
    """
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # type: ignore[no-redef]
    return runtime


def cuda_error_name(cudart: Any, err: Any) -> str:
    """``cudaErrorNoDevice``-style name of a runtime error code."""
    try:
        _, name = cudart.cudaGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return str(err)


def probe_gpu_cuda_python(device: int = 0) -> tuple[GpuInfo | None, str]:
    """Device ``device`` through cuda-python's runtime API."""
    try:
        rt = cudart()
    except ImportError as e:
        return None, f"cuda-python not installed ({e})"
    try:
        err, count = rt.cudaGetDeviceCount()
        if err != rt.cudaError_t.cudaSuccess:
            return None, f"CUDA runtime: {cuda_error_name(rt, err)}"
        if count <= device:
            return None, f"CUDA runtime sees {count} device(s); device {device} does not exist"
        err, prop = rt.cudaGetDeviceProperties(device)
        if err != rt.cudaError_t.cudaSuccess:
            return None, f"cudaGetDeviceProperties: {cuda_error_name(rt, err)}"
        name = prop.name.split(b"\x00")[0].decode() if isinstance(prop.name, bytes) else prop.name
        return GpuInfo(
            name=str(name),
            compute_capability=(int(prop.major), int(prop.minor)),
            total_memory_bytes=int(prop.totalGlobalMem),
            source="cuda-python",
            sm_count=int(prop.multiProcessorCount),
        ), ""
    except Exception as e:  # missing driver libraries raise from inside cuda-python
        return None, f"cuda-python probe failed: {type(e).__name__}: {e}"


def parse_nvidia_smi(text: str, device: int = 0) -> GpuInfo | None:
    """One line per GPU of ``nvidia-smi --query-gpu=name,compute_cap,memory.total``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) <= device:
        return None
    fields = [f.strip() for f in lines[device].split(",")]
    if len(fields) < 2 or not re.fullmatch(r"\d+\.\d+", fields[1]):
        return None
    major, minor = (int(v) for v in fields[1].split("."))
    mem = None
    if len(fields) > 2 and (m := re.match(r"(\d+)\s*MiB", fields[2])):
        mem = int(m.group(1)) << 20
    return GpuInfo(fields[0], (major, minor), mem, source="nvidia-smi")


def probe_gpu_nvidia_smi(device: int = 0) -> tuple[GpuInfo | None, str]:
    """Device ``device`` through ``nvidia-smi`` (absent on Jetson)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found"
    query = "--query-gpu=name,compute_cap,memory.total"
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader"],
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"nvidia-smi failed: {e}"
    gpu = parse_nvidia_smi(out, device)
    return (gpu, "") if gpu else (None, f"nvidia-smi lists no device {device}: {out.strip()!r}")


def probe_gpu(device: int = 0) -> tuple[GpuInfo | None, str]:
    """cuda-python first, then nvidia-smi; ``(None, reasons)`` when both fail."""
    gpu, why_cuda = probe_gpu_cuda_python(device)
    if gpu is not None:
        return gpu, ""
    gpu, why_smi = probe_gpu_nvidia_smi(device)
    if gpu is not None:
        return gpu, ""
    return None, f"{why_cuda}; {why_smi}"


def gpu_identity(device: int = 0) -> tuple[GpuInfo | None, str | None, str]:
    """``(gpu, jetson module, why not)``: what the fingerprint is made of.

    On a Jetson the device tree names the SoC's GPU and the module whichever probe works;
    elsewhere :func:`probe_gpu` (cuda-python or nvidia-smi: the same name and capability).
    """
    jetson = jetson_info()
    if jetson is not None and jetson.gpu is not None:
        return jetson.gpu, jetson.module, ""
    gpu, why = probe_gpu(device)
    if jetson is not None and gpu is None:
        why = f"unknown Jetson SoC {jetson.soc!r} and no CUDA probe worked: {why}"
    return gpu, jetson.module if jetson else None, why


_FINGERPRINTS: dict[int, str] = {}


def device_fingerprint(device: int = 0) -> str:
    """This machine's engine folder name (``$SEGZERO_DEVICE_FINGERPRINT`` overrides).

    Cached per process once a GPU is identified; without one every call probes again (a
    driver or cuda-python installed later, or a GPU that was busy, is seen then).
    """
    override = os.environ.get(ENV_FINGERPRINT)
    if override:
        if not is_valid_fingerprint(override):
            raise ValueError(
                f"${ENV_FINGERPRINT}={override!r} is not a safe folder name "
                "(lower-case letters, digits, '.', '_', '-')"
            )
        return override
    if device in _FINGERPRINTS:
        return _FINGERPRINTS[device]
    gpu, module, _ = gpu_identity(device)
    trt, _ = tensorrt_version()
    l4t, _ = l4t_release()
    fp = format_fingerprint(gpu, trt, l4t, module=module)
    if gpu is not None:
        _FINGERPRINTS[device] = fp
    return fp


device_fingerprint.cache_clear = _FINGERPRINTS.clear  # type: ignore[attr-defined]


def has_gpu_identity(device: int = 0) -> tuple[bool, str]:
    """Whether this device's fingerprint names a GPU (or is overridden), and why not."""
    if os.environ.get(ENV_FINGERPRINT):
        return True, ""
    gpu, _, why = gpu_identity(device)
    return gpu is not None, why


def device_info(device: int = 0) -> dict[str, Any]:
    """Everything the probes found, with a reason for each one that found nothing."""
    gpu, _, gpu_why = gpu_identity(device)
    probed, probe_why = probe_gpu(device)
    trt, trt_why = tensorrt_version()
    l4t, l4t_why = l4t_release()
    jetson = jetson_info()
    info: dict[str, Any] = {
        "fingerprint": device_fingerprint(device),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "gpu": None,
        "gpu_reason": gpu_why,
        "tensorrt_version": trt,
        "tensorrt_reason": trt_why,
        "l4t_release": l4t,
        "l4t_reason": l4t_why,
        "jetson_model": jetson_model(),
        "jetson": None
        if jetson is None
        else {
            "soc": jetson.soc,
            "module": jetson.module,
            "module_name": jetson.module_name,
            "sm_count": jetson.sm_count,
        },
        "cuda_probe": None
        if probed is None
        else {
            "name": probed.name,
            "compute_capability": f"{probed.compute_capability[0]}.{probed.compute_capability[1]}",
            "sm_count": probed.sm_count,
            "source": probed.source,
        },
        "cuda_probe_reason": probe_why,
    }
    if gpu is not None:
        info["gpu"] = {
            "name": gpu.name,
            "compute_capability": f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}",
            "total_memory_mib": None
            if gpu.total_memory_bytes is None
            else gpu.total_memory_bytes >> 20,
            "source": gpu.source,
        }
    return info
