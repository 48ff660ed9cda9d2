"""Re-exports of :mod:`segzero_edge.platform` under the names callers imported before the split
(``segzero_edge.device.device_fingerprint`` and friends): the Jetson device tree
(:mod:`~segzero_edge.platform.jetson`), the TensorRT import (:mod:`~segzero_edge.platform.trt`),
cuda-python (:mod:`~segzero_edge.platform.cuda`), the GPU probes
(:mod:`~segzero_edge.platform.gpu`), the fingerprint
(:mod:`~segzero_edge.platform.fingerprint`) and the doctor report
(:mod:`~segzero_edge.platform.report`). New code imports from those modules.
"""

from __future__ import annotations

from .platform.cuda import cuda_error_name, cudart
from .platform.fingerprint import (
    ENV_FINGERPRINT,
    device_fingerprint,
    format_fingerprint,
    gpu_identity,
    has_gpu_identity,
    is_valid_fingerprint,
    short_gpu_name,
    slug,
)
from .platform.gpu import (
    GpuInfo,
    parse_nvidia_smi,
    probe_gpu,
    probe_gpu_cuda_python,
    probe_gpu_nvidia_smi,
)
from .platform.jetson import (
    DEVICE_TREE_COMPATIBLE,
    DEVICE_TREE_MODEL,
    JETSON_MODULES,
    TEGRA_GPUS,
    TEGRA_RELEASE,
    JetsonInfo,
    jetson_info,
    jetson_model,
    l4t_release,
    parse_jetson,
    parse_tegra_release,
    read_compatible,
)
from .platform.report import device_info
from .platform.trt import (
    MIN_TENSORRT,
    import_tensorrt,
    load_tensorrt,
    parse_version,
    tensorrt_logger,
    tensorrt_supported,
    tensorrt_version,
)

__all__ = [
    "DEVICE_TREE_COMPATIBLE",
    "DEVICE_TREE_MODEL",
    "ENV_FINGERPRINT",
    "JETSON_MODULES",
    "MIN_TENSORRT",
    "TEGRA_GPUS",
    "TEGRA_RELEASE",
    "GpuInfo",
    "JetsonInfo",
    "cuda_error_name",
    "cudart",
    "device_fingerprint",
    "device_info",
    "format_fingerprint",
    "gpu_identity",
    "has_gpu_identity",
    "import_tensorrt",
    "is_valid_fingerprint",
    "jetson_info",
    "jetson_model",
    "l4t_release",
    "load_tensorrt",
    "parse_jetson",
    "parse_nvidia_smi",
    "parse_tegra_release",
    "parse_version",
    "probe_gpu",
    "probe_gpu_cuda_python",
    "probe_gpu_nvidia_smi",
    "read_compatible",
    "short_gpu_name",
    "slug",
    "tensorrt_logger",
    "tensorrt_supported",
    "tensorrt_version",
]
