"""Loading a bundle: :meth:`SegZeroEdge.from_bundle
<segzero_edge.pipeline.SegZeroEdge.from_bundle>` (defined here, bound as that classmethod by the
package): every option checked before any backend loads, then the bundle's reasoner and
segmenter opened (:func:`segzero_edge.bundle.open_backends`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..backend_options import BackendOptions, backend_keywords
from ..options import whole_number
from .embedding_cache import DEFAULT_CACHE_FRAMES

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import SegZeroEdge

log = logging.getLogger("segzero_edge.pipeline")
"""SegZeroEdge's logger: the line a load logs at INFO is the model's."""


@backend_keywords
def from_bundle(
    cls: type[SegZeroEdge],
    /,
    path: str | os.PathLike[str],
    *,
    cache_frames: int = DEFAULT_CACHE_FRAMES,
    **options: Unpack[BackendOptions],
) -> SegZeroEdge:
    """Load a bundle folder (``segzero-edge export`` wrote it): verify its manifest and
    files, open the reasoner (llama.cpp) and the segmenter (SAM2 on TensorRT or
    onnxruntime).

    Follows llama-cpp-python's ``Llama(model_path, n_ctx=, n_gpu_layers=, n_threads=,
    n_batch=, verbose=)`` for the reasoner and SAM2's ``build_sam2`` /
    ``SAM2ImagePredictor`` for the segmenter; every option is a keyword (the backend ones
    are :class:`~segzero_edge.backend_options.BackendOptions`, listed below).

    Args:
        path: The bundle folder (holds ``manifest.json``).
        cache_frames: Frames whose SAM2 encoding is kept (0: none).
        **options: The backend keywords (:class:`~segzero_edge.backend_options.BackendOptions`):

    Returns:
        A :class:`SegZeroEdge`; use it as a context manager or call :meth:`close`.

    Raises:
        TypeError: An unknown keyword (a typo), named in the message with the closest
            known keyword.
        ValueError: A bad option value (named), e.g. ``max_objects=0``, an unknown family
            or segmenter backend, an ``n_ctx`` too small for the family's prompt.
        BundleError: The folder is not a readable bundle (names the file and field).
        BackendError: llama.cpp or onnxruntime cannot load a model file
            (``ReasonerLoadError`` for the reasoner).
        TensorRTUnavailable: ``segmenter_backend="tensorrt"`` cannot run here.
    """
    from ..bundle import open_backends

    # every option is checked before the backends load (the backend ones by open_backends)
    cache_frames = whole_number("cache_frames", cache_frames, minimum=0)
    options["max_objects"] = whole_number("max_objects", options["max_objects"], minimum=1)
    t0 = time.perf_counter()
    reasoner, segmenter, fam = open_backends(path, **options)
    model = cls(
        reasoner,
        segmenter,
        family=fam,
        overlap=options["overlap"],
        cache_frames=cache_frames,
        max_objects=options["max_objects"],
    )
    model.bundle_dir = Path(path)
    log.info("%s (%.1f s)", model.describe(), time.perf_counter() - t0)
    return model


__all__ = ["from_bundle"]
