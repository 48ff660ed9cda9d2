"""Which device this is: GPU, compute capability, TensorRT version, Jetson L4T release.

``device_fingerprint()`` names the folder TensorRT engines are stored under
(``bundle/engines/<fingerprint>/``), e.g. ``orin-sm87-trt10.3.0-l4t36.4.0`` on a Jetson or
``cpu-x86_64`` without a GPU. Engines are only valid for the GPU architecture and TensorRT
version they were built with, so both are part of it. Every probe fails soft: it returns
``None`` and a reason instead of raising. ``$SEGZERO_DEVICE_FINGERPRINT`` overrides the result.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import TensorRTUnavailable

ENV_FINGERPRINT = "SEGZERO_DEVICE_FINGERPRINT"
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
_SLUG = re.compile(r"[^a-z0-9._]+")
_FINGERPRINT = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as a probe saw it."""

    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int | None = None
    source: str = ""


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
) -> str:
    """Join the parts: ``<gpu>-sm<XY>[-trt<a.b.c>][-l4t<r>]``, or ``cpu-<machine>[...]``."""
    if gpu is None:
        parts = ["cpu", slug(machine or platform.machine() or "unknown")]
    else:
        major, minor = gpu.compute_capability
        parts = [short_gpu_name(gpu.name), f"sm{major}{minor}"]
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


def l4t_release(path: Path = TEGRA_RELEASE) -> tuple[str | None, str]:
    """The Jetson Linux (L4T) release, or ``None`` and why not."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None, f"{path} not found (not a Jetson)"
    except OSError as e:
        return None, f"{path} unreadable: {e}"
    release = parse_tegra_release(text)
    return (release, "") if release else (None, f"{path} has an unknown format")


def jetson_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board name from the device tree (e.g. ``NVIDIA Jetson AGX Orin Developer Kit``)."""
    try:
        return path.read_bytes().rstrip(b"\x00\n").decode(errors="replace") or None
    except OSError:
        return None


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


def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`TensorRTUnavailable` saying where it comes from."""
    trt, why = load_tensorrt()
    if trt is None:
        raise TensorRTUnavailable(
            f"TensorRT is not usable here: {why}. It comes with JetPack on a Jetson "
            "(apt package python3-libnvinfer; in a venv use --system-site-packages), "
            "not from pip; engines must be built on the device that runs them."
        )
    return trt


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


@lru_cache(maxsize=4)
def device_fingerprint(device: int = 0) -> str:
    """This machine's engine folder name (cached; ``$SEGZERO_DEVICE_FINGERPRINT`` overrides)."""
    override = os.environ.get(ENV_FINGERPRINT)
    if override:
        if not is_valid_fingerprint(override):
            raise ValueError(
                f"${ENV_FINGERPRINT}={override!r} is not a safe folder name "
                "(lower-case letters, digits, '.', '_', '-')"
            )
        return override
    gpu, _ = probe_gpu(device)
    trt, _ = tensorrt_version()
    l4t, _ = l4t_release()
    return format_fingerprint(gpu, trt, l4t)


def device_info(device: int = 0) -> dict[str, Any]:
    """Everything the probes found, with a reason for each one that found nothing."""
    gpu, gpu_why = probe_gpu(device)
    trt, trt_why = tensorrt_version()
    l4t, l4t_why = l4t_release()
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
