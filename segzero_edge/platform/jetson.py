"""A Jetson as its device tree and ``/etc/nv_tegra_release`` describe it.

The device tree names the SoC (``/proc/device-tree/compatible``: ``nvidia,tegra234``) and the
module (``nvidia,p3737-0000+p3701-0005`` = carrier + module part number), needing neither
cuda-python nor nvidia-smi. Every reader fails soft: ``None`` (and a reason) off a Jetson.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .gpu import GpuInfo

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
        """The module's marketing name (:data:`JETSON_MODULES`), None when unknown."""
        return JETSON_MODULES[self.module][0] if self.module in JETSON_MODULES else None

    @property
    def sm_count(self) -> int | None:
        """The module's streaming multiprocessors (:data:`JETSON_MODULES`), None when unknown."""
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


__all__ = [
    "DEVICE_TREE_COMPATIBLE",
    "DEVICE_TREE_MODEL",
    "JETSON_MODULES",
    "TEGRA_GPUS",
    "TEGRA_RELEASE",
    "JetsonInfo",
    "jetson_info",
    "jetson_model",
    "l4t_release",
    "parse_jetson",
    "parse_tegra_release",
    "read_compatible",
]
