"""The device fingerprint: the folder TensorRT engines are stored under.

``device_fingerprint()`` names ``bundle/engines/<fingerprint>/``, e.g.
``orin-sm87-p3701-0005-trt10.3.0-l4t36.4.0`` on a Jetson AGX Orin 64GB or ``cpu-x86_64``
without a GPU. Engines are only valid for the GPU (its architecture and, TensorRT warns, its
model: an AGX Orin has 16 SMs, an Orin Nano 8 or 4) and the TensorRT version they were built
with, so all of them are part of it.

The GPU is identified the same way whichever probe works: on a Jetson from the device tree
(:mod:`.jetson`), elsewhere from cuda-python or nvidia-smi (:mod:`.gpu`). A result without a
GPU is not cached (a later call probes again). ``$SEGZERO_DEVICE_FINGERPRINT`` overrides it.
"""

from __future__ import annotations

import os
import platform
import re

from .gpu import GpuInfo, probe_gpu
from .jetson import jetson_info, l4t_release
from .trt import tensorrt_version

ENV_FINGERPRINT = "SEGZERO_DEVICE_FINGERPRINT"
_SLUG = re.compile(r"[^a-z0-9._]+")
_FINGERPRINT = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")


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


def gpu_identity(device: int = 0) -> tuple[GpuInfo | None, str | None, str]:
    """``(gpu, jetson module, why not)``: what the fingerprint is made of.

    On a Jetson the device tree names the SoC's GPU and the module whichever probe works;
    elsewhere :func:`~.gpu.probe_gpu` (cuda-python or nvidia-smi: the same name and
    capability).
    """
    jetson = jetson_info()
    if jetson is not None and jetson.gpu is not None:
        return jetson.gpu, jetson.module, ""
    gpu, why = probe_gpu(device)
    if jetson is not None and gpu is None:
        why = f"unknown Jetson SoC {jetson.soc!r} and no CUDA probe worked: {why}"
    return gpu, jetson.module if jetson else None, why


_FINGERPRINTS: dict[int, str] = {}  # device -> fingerprint, once a GPU was identified


def device_fingerprint(device: int = 0) -> str:
    """This machine's engine folder name (``$SEGZERO_DEVICE_FINGERPRINT`` overrides; a value
    that is not a safe folder name raises ``ValueError``).

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


def has_gpu_identity(device: int = 0) -> tuple[bool, str]:
    """Whether this device's fingerprint names a GPU (or is overridden), and why not."""
    if os.environ.get(ENV_FINGERPRINT):
        return True, ""
    gpu, _, why = gpu_identity(device)
    return gpu is not None, why


__all__ = [
    "ENV_FINGERPRINT",
    "device_fingerprint",
    "format_fingerprint",
    "gpu_identity",
    "has_gpu_identity",
    "is_valid_fingerprint",
    "short_gpu_name",
    "slug",
]
