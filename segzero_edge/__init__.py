"""segzero-edge: Seg-Zero reasoning segmentation on NVIDIA Jetson Orin.

``import segzero_edge`` pulls in numpy only: no torch, no transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .answer import ParsedAnswer, parse_answer, to_image_frame
from .pipeline import SegZeroEdge
from .prompt import REASONER_SIZE, build_prompt
from .types import ObjectPrompt, Segmentation, Status

__all__ = [
    "REASONER_SIZE",
    "ObjectPrompt",
    "ParsedAnswer",
    "SegZeroEdge",
    "Segmentation",
    "Status",
    "__version__",
    "build_prompt",
    "parse_answer",
    "to_image_frame",
]
