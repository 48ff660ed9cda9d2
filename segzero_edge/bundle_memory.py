"""A bundle's SAM2 memory graphs, opened only after the bundle is verified.

Here, above both :mod:`segzero_edge.bundle` and :mod:`segzero_edge.segmenter`, so that the
segmenter layer never imports the bundle reader (which imports the segmenter layer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .backends import Segmenter
from .bundle import load_bundle
from .errors import BundleError
from .layout import (
    MANIFEST,
    SAM2_MEMORY_ATTENTION_FILE,
    SAM2_MEMORY_ENCODER_FILE,
    SAM2_MEMORY_FILES,
    SAM2_MEMORY_GRAPHS,
)
from .segmenter.memory import REEXPORT, SAM2Memory, TrackingConfig, tracking_of


def manifest_tracking(bundle_dir: Path) -> TrackingConfig | None:
    """``segmenter.tracking`` of the bundle's manifest (the bundle verified by
    :func:`~segzero_edge.bundle.load_bundle`), or None when it has none."""
    return tracking_of(load_bundle(bundle_dir).manifest, Path(bundle_dir) / MANIFEST)


def open_memory(
    bundle_dir: str | os.PathLike[str], backend: str = "onnxruntime", **opts: Any
) -> SAM2Memory:
    """The memory graphs of a bundle on ``backend`` (``"onnxruntime"`` or ``"tensorrt"``).

    The bundle is verified first (:func:`~segzero_edge.bundle.load_bundle`), and only memory
    graphs its manifest lists are opened. Raises :class:`~segzero_edge.errors.BundleError`
    when the bundle has no memory graphs (exported before tracking existed: re-export it) or
    has them without listing them, ``RuntimeError`` when TensorRT engines for them are missing
    on this device.
    """
    bundle = load_bundle(bundle_dir)  # containment, sizes, graphs against the manifest
    root = bundle.root
    mpath = root / MANIFEST
    unlisted = [name for name in SAM2_MEMORY_FILES if name not in bundle.manifest.files]
    if unlisted:
        if any(os.path.lexists(root / name) for name in unlisted):
            raise BundleError(
                f"{mpath} does not list {', '.join(unlisted)}: the runtime opens only files "
                "a bundle's manifest lists (with their size and sha256); re-export the bundle "
                "to use track() (segment() keeps working)"
            )
        raise BundleError(f"{root}: {REEXPORT}")
    paths = (bundle.path(SAM2_MEMORY_ATTENTION_FILE), bundle.path(SAM2_MEMORY_ENCODER_FILE))
    config = tracking_of(bundle.manifest, mpath)
    if backend == "onnxruntime":
        from .segmenter.memory_onnxruntime import OrtMemory

        return OrtMemory(*paths, config=config, **opts)
    if backend == "tensorrt":
        from .engine_cache import check_engines
        from .segmenter.memory_tensorrt import TensorRTMemory

        plans, why = check_engines(root, SAM2_MEMORY_GRAPHS)
        if plans is None:
            raise RuntimeError(f"no current TensorRT engines for the SAM2 memory graphs: {why}")
        return TensorRTMemory(plans[0], plans[1], config=config or TrackingConfig(), **opts)
    raise ValueError(f"unknown memory backend {backend!r}; use 'onnxruntime' or 'tensorrt'")


def open_memory_for(bundle_dir: str | os.PathLike[str], segmenter: Segmenter) -> SAM2Memory:
    """The bundle's memory graphs (:func:`open_memory`) on ``segmenter``'s backend: TensorRT
    engines beside a TensorRT segmenter, else onnxruntime with the segmenter's execution
    providers. Raises as :func:`open_memory`."""
    if segmenter.backend == "tensorrt":
        return open_memory(bundle_dir, "tensorrt")
    return open_memory(bundle_dir, "onnxruntime", providers=segmenter.providers)
