"""segzero-edge: Seg-Zero reasoning segmentation on NVIDIA Jetson Orin.

``import segzero_edge`` pulls in numpy only: no torch, no transformers.
"""

from __future__ import annotations

from ._version import __version__
from .answer import ParsedAnswer, parse_answer, to_image_frame
from .families import FAMILIES, ModelFamily, build_prompt, get_family
from .layout import REASONER_SIZE
from .pipeline import SegZeroEdge
from .types import ObjectPrompt, Segmentation, Status

__all__ = [
    "FAMILIES",
    "REASONER_SIZE",
    "ModelFamily",
    "ObjectPrompt",
    "ParsedAnswer",
    "SegZeroEdge",
    "Segmentation",
    "Status",
    "__version__",
    "build_prompt",
    "get_family",
    "parse_answer",
    "to_image_frame",
]
