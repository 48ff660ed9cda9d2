"""Open the best SAM2 segmenter of a bundle (TensorRT engines when usable, else onnxruntime),
and its video-memory graphs for tracking."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import Segmenter
from ..errors import TensorRTUnavailable
from ..layout import ENGINES_DIR, SAM2_DECODER_FILE, SAM2_ENCODER_FILE

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")
ORT_ONLY_OPTIONS = ("providers", "threads", "fp16", "trt_cache_dir", "spin_wait")


def tensorrt_status(bundle_dir: Path) -> tuple[tuple[Path, Path] | None, str]:
    """``((encoder_plan, decoder_plan), "")`` when TensorRT can run here, else ``(None, why)``."""
    try:
        from . import tensorrt as trt_backend
    except ImportError as e:
        return None, f"the TensorRT backend module cannot be imported ({e})"
    ok, why = trt_backend.available()
    if not ok:
        return None, why
    from ..engine_cache import check_engines

    plans, why = check_engines(bundle_dir)
    if plans is None:
        return None, why
    return (plans[0], plans[1]), ""


def _open_onnxruntime(bundle_dir: Path, opts: dict[str, Any]) -> Segmenter:
    from .onnxruntime import OrtSegmenter

    encoder, decoder = bundle_dir / SAM2_ENCODER_FILE, bundle_dir / SAM2_DECODER_FILE
    for path in (encoder, decoder):
        if not path.is_file():
            raise FileNotFoundError(f"SAM2 ONNX file missing from the bundle: {path}")
    return OrtSegmenter(encoder, decoder, **opts)


def open_segmenter(
    bundle_dir: str | os.PathLike[str], backend: str = "auto", **opts: Any
) -> Segmenter:
    """A SAM2 segmenter for ``bundle_dir``.

    ``backend``: ``"tensorrt"`` (engines built for this device), ``"onnxruntime"`` (the ONNX
    graphs), or ``"auto"`` (TensorRT when available with engines for this device, else
    onnxruntime). ``opts`` go to the chosen backend; in ``"auto"`` mode the onnxruntime-only
    options (``providers``, ``threads``, ``fp16``, ``trt_cache_dir``, ``spin_wait``) are
    dropped when TensorRT is chosen. ``"auto"`` falls back to onnxruntime, with a warning
    saying why, when the engines are stale (e.g. built with another TensorRT version), or
    current by their ``engines.json`` but not loadable here (TensorRT cannot deserialize
    them, or device memory runs out).

    Raises ``TensorRTUnavailable`` when ``"tensorrt"`` is asked for and cannot run here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown segmenter backend {backend!r}; use one of {', '.join(BACKENDS)}")
    root = Path(bundle_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"bundle folder not found: {root}")
    if backend == "onnxruntime":
        return _open_onnxruntime(root, opts)
    plans, why = tensorrt_status(root)
    if plans is None:
        if backend == "tensorrt":
            raise TensorRTUnavailable(f"segmenter backend 'tensorrt' is unavailable: {why}")
        built = sorted({p.parent.name for p in (root / ENGINES_DIR).glob("*/*.plan")})
        if built:  # engines were built (for this or another fingerprint): say why not used
            log.warning(
                "TensorRT engines in %s (built for %s) not used: %s; SAM2 runs on onnxruntime",
                root / ENGINES_DIR, ", ".join(built), why,
            )  # fmt: skip
        return _open_onnxruntime(root, opts)
    from ..errors import CudaError
    from .tensorrt import EngineLoadError, TensorRTSegmenter

    if backend == "tensorrt":
        return TensorRTSegmenter(*plans, **opts)
    trt_opts = {k: v for k, v in opts.items() if k not in ORT_ONLY_OPTIONS}
    try:
        return TensorRTSegmenter(*plans, **trt_opts)
    except (EngineLoadError, CudaError) as e:  # current by the bookkeeping, unusable here
        log.warning(
            "TensorRT engines in %s not used: %s; SAM2 runs on onnxruntime", plans[0].parent, e
        )
        return _open_onnxruntime(root, opts)
