"""Target devices: memory budgets and roofline ceilings (NVIDIA Jetson Orin module data sheets).

GPU FP16 figures are dense tensor-core peaks derived from NVIDIA's published sparse INT8
TOPS (sparse INT8 / 4); they are ceilings for roofline estimates, not expected speeds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One deployment target."""

    name: str
    description: str
    memory_gb: float
    """Total memory (shared CPU/GPU on Jetson)."""
    budget_gb: float
    """What the bundle's weights + activations may use (GPU-usable share of memory)."""
    bandwidth_gbs: float
    fp16_tflops: float
    compute_capability: str | None
    fits: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "orin-nano-8gb",
            "Jetson Orin Nano 8GB (Super: MAXN SUPER)",
            8,
            5.2,
            102,
            16.7,
            "8.7",
            "3B Q4 + SAM2-tiny",
        ),
        Target(
            "orin-nx-16gb",
            "Jetson Orin NX 16GB",
            16,
            12.0,
            102.4,
            15.0,
            "8.7",
            "7B Q4 + SAM2-small/base+",
        ),
        Target(
            "agx-orin-32gb",
            "Jetson AGX Orin 32GB",
            32,
            26.0,
            204.8,
            26.7,
            "8.7",
            "7B Q4 + SAM2-large",
        ),
        Target(
            "agx-orin-64gb",
            "Jetson AGX Orin 64GB",
            64,
            56.0,
            204.8,
            42.6,
            "8.7",
            "7B Q4 + SAM2-large",
        ),
    )
}

TARGET_NAMES = [*TARGETS, "cpu"]


def host_memory_gb() -> float:
    """Physical memory of this machine in GB (10^9 bytes)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def get_target(name: str) -> Target:
    """The named target; ``cpu`` is this host with 80% of its memory as budget."""
    if name == "cpu":
        mem = host_memory_gb()
        return Target("cpu", "this host, CPU only", mem, 0.8 * mem, 0.0, 0.0, None, "any")
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(
            f"unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)}"
        ) from None
