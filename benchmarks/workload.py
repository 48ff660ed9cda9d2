"""The inputs both sides run on: one seeded image, one query, one fixed SAM2 prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STAGES = (
    "preprocess",
    "vision_encode",
    "prefill",
    "decode",
    "sam_encode",
    "sam_decode",
    "postprocess",
    "total",
)
"""Stages reported for both sides; ``total`` is the end-to-end wall time of one call."""


@dataclass
class BenchInputs:
    """What one benchmark iteration processes (identical for both sides)."""

    height: int = 480
    width: int = 640
    query: str = "the knife that can cut the bread"
    decode_tokens: int = 64
    seed: int = 0
    family: str = "multi-object"
    """Model family whose prompt and SAM2 prompt both sides use (``segzero_edge.families``)."""

    def image(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)

    def box(self) -> list[float]:
        """A fixed box (original-image pixels): random weights give no parseable answer."""
        w, h = self.width, self.height
        return [w * 0.25, h * 0.25, w * 0.75, h * 0.75]

    def point(self) -> list[float]:
        return [self.width * 0.5, self.height * 0.5]

    def to_json(self) -> dict[str, object]:
        return asdict(self)
