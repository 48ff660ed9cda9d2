"""Everything the platform probes found, as ``segzero-edge doctor`` prints it."""

from __future__ import annotations

import platform
from typing import Any

from .fingerprint import device_fingerprint, gpu_identity
from .gpu import probe_gpu
from .jetson import jetson_info, jetson_model, l4t_release
from .trt import tensorrt_version


def device_info(device: int = 0) -> dict[str, Any]:
    """Everything the probes found, with a reason for each one that found nothing: keys
    ``fingerprint``, ``machine``, ``system``, ``python``, ``gpu`` / ``gpu_reason``,
    ``tensorrt_version`` / ``tensorrt_reason``, ``l4t_release`` / ``l4t_reason``,
    ``jetson_model``, ``jetson``, ``cuda_probe`` / ``cuda_probe_reason`` (JSON-ready)."""
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


__all__ = ["device_info"]
