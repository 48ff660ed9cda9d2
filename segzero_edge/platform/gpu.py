"""Which CUDA device this is, through cuda-python's runtime API or ``nvidia-smi``.

Both report the same name and compute capability. Every probe fails soft: it returns
``None`` and a reason instead of raising. (On a Jetson the device tree names the GPU without
either: :mod:`.jetson`.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from .cuda import CudaError, check, cudart


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as a probe saw it: ``name`` as the driver reports it,
    ``compute_capability`` (major, minor), ``total_memory_bytes`` when known, ``source`` the
    probe ("device tree", "cuda-python", "nvidia-smi"), ``sm_count`` streaming
    multiprocessors (cuda-python reports it)."""

    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int | None = None
    source: str = ""
    sm_count: int | None = None


def probe_gpu_cuda_python(device: int = 0) -> tuple[GpuInfo | None, str]:
    """Device ``device`` through cuda-python's runtime API (``cudaGetDeviceProperties``)."""
    try:
        rt = cudart()
    except ImportError as e:
        return None, f"cuda-python not installed ({e})"
    try:
        count = int(check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))
        if count <= device:
            return None, f"CUDA runtime sees {count} device(s); device {device} does not exist"
        prop = check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.split(b"\x00")[0].decode() if isinstance(prop.name, bytes) else prop.name
        return GpuInfo(
            name=str(name),
            compute_capability=(int(prop.major), int(prop.minor)),
            total_memory_bytes=int(prop.totalGlobalMem),
            source="cuda-python",
            sm_count=int(prop.multiProcessorCount),
        ), ""
    except CudaError as e:
        return None, f"CUDA runtime: {e}"
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


__all__ = [
    "GpuInfo",
    "parse_nvidia_smi",
    "probe_gpu",
    "probe_gpu_cuda_python",
    "probe_gpu_nvidia_smi",
]
