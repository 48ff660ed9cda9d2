"""segzero-edge: Seg-Zero reasoning segmentation on NVIDIA Jetson Orin (the on-device runtime;
its siblings: the folder ``export/`` is the package ``segzero_export``, ``train/`` is
``segzero_train``, ``benchmarks/`` is ``segzero_bench``).

``import segzero_edge`` is light: it imports nothing but this module's table of names (no
numpy, no torch, no llama.cpp, no onnxruntime). Each public name is imported from its module
on first use (PEP 562 ``__getattr__``), so ``from segzero_edge import SegZeroEdge, BundleError``
works as usual. ``SEGZERO_LOG_LEVEL`` (e.g. ``INFO``) sends the package's log to stderr
(:mod:`segzero_edge.logs`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .logs import configure_from_env as _configure_log_from_env

_EXPORTS: dict[str, str] = {
    # the model and its results
    "SegZeroEdge": "pipeline",
    "BackendOptions": "backend_options",
    "default_bundle": "commands.segment",
    "Segmentation": "types",
    "ObjectPrompt": "types",
    "Status": "types",
    "Tracker": "tracker",
    "TrackedSegmentation": "tracker",
    # inputs
    "NV12Frame": "image",
    # errors
    "BundleError": "errors",
    "BackendError": "errors",
    "TensorRTUnavailable": "errors",
    "MissingExtra": "errors",
    "ReasonerLoadError": "errors",
    # model families, answers and fixed sizes
    "FAMILIES": "families",
    "ModelFamily": "families",
    "build_prompt": "families",
    "get_family": "families",
    "AnswerObject": "answer",
    "ParsedAnswer": "answer",
    "parse_answer": "answer",
    "to_image_pixels": "answer",
    "REASONER_SIZE": "layout",
    "DEFAULT_MAX_OBJECTS": "layout",
}
"""Public name -> the module (under ``segzero_edge``) that defines it."""

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "FAMILIES",
    "REASONER_SIZE",
    "AnswerObject",
    "BackendError",
    "BackendOptions",
    "BundleError",
    "MissingExtra",
    "ModelFamily",
    "NV12Frame",
    "ObjectPrompt",
    "ParsedAnswer",
    "ReasonerLoadError",
    "SegZeroEdge",
    "Segmentation",
    "Status",
    "TensorRTUnavailable",
    "TrackedSegmentation",
    "Tracker",
    "__version__",
    "build_prompt",
    "default_bundle",
    "get_family",
    "parse_answer",
    "to_image_pixels",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .answer import AnswerObject, ParsedAnswer, parse_answer, to_image_pixels
    from .backend_options import BackendOptions
    from .commands.segment import default_bundle
    from .errors import (
        BackendError,
        BundleError,
        MissingExtra,
        ReasonerLoadError,
        TensorRTUnavailable,
    )
    from .families import FAMILIES, ModelFamily, build_prompt, get_family
    from .image import NV12Frame
    from .layout import DEFAULT_MAX_OBJECTS, REASONER_SIZE
    from .pipeline import SegZeroEdge
    from .tracker import TrackedSegmentation, Tracker
    from .types import ObjectPrompt, Segmentation, Status


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segzero_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


_configure_log_from_env()
