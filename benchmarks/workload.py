"""What every side runs: seeded frames, queries, the answer's objects, and the workloads.

Workloads (the same calls on every side):

``single``
    one query per new frame (the robot's common case: nothing cached).
``multi-query``
    three different queries on one new frame (the SAM2 encoding can be shared).
``multi-object``
    one query on a new frame whose answer names three objects (three SAM2 decodes).

Random weights write no usable answer, so the answer's objects are fixed
(:meth:`BenchInputs.objects`, in the reasoner's 840 x 840 resize coordinates) and every side
prompts SAM2 with them, in the answer form, mapping and SAM2 prompt of the benchmarked model
family.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segzero_edge.answer import AnswerObject
from segzero_edge.families import get_family
from segzero_edge.layout import REASONER_SIZE
from segzero_edge.segmenter.prompts import ObjectSamPrompt
from segzero_edge.types import ObjectPrompt

from .measure import aggregate, summarize

DEFAULT_DECODE_TOKENS = 128
"""Tokens decoded per call unless told: about the length of a Seg-Zero answer with its
reasoning (``<think>`` text, then the ``<answer>`` JSON)."""

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
"""Stages reported per call; ``total`` is the end-to-end wall time of one call."""

WORKLOADS = ("single", "multi-query", "multi-object")
WORKLOAD_TITLES = {
    "single": "one query per new frame",
    "multi-query": "three queries on one frame",
    "multi-object": "a three-object answer",
}
CALLS = {"single": 1, "multi-query": 3, "multi-object": 1}
OBJECTS = {"single": 1, "multi-query": 1, "multi-object": 3}

Call = Callable[[np.ndarray, str, int, bool], dict[str, float]]
"""``call(frame, query, n_objects, new_frame) -> {stage: seconds}`` of one side."""


@dataclass
class BenchInputs:
    """What the benchmark processes (identical for every side)."""

    height: int = 480
    width: int = 640
    queries: tuple[str, ...] = (
        "the knife that can cut the bread",
        "the cup I can pour water into",
        "what keeps the food cold",
    )
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    seed: int = 0
    family: str = "multi-object"
    """Model family whose prompt, answer form, mapping and SAM2 prompt every side uses
    (``segzero_edge.families``). A one-object family (``segzero-v1``) has no
    ``multi-object`` workload: it is left out of :attr:`workloads`."""
    workloads: tuple[str, ...] = WORKLOADS
    overlap: bool | None = None
    """The runtime's ``SegZeroEdge(overlap=...)`` (None: its default)."""
    _frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.queries = tuple(self.queries)
        self.workloads = tuple(self.workloads)
        bad = [w for w in self.workloads if w not in WORKLOADS]
        if get_family(self.family).schema == "object" and not bad:  # one object per answer
            self.workloads = tuple(w for w in self.workloads if OBJECTS[w] == 1)
        if bad or not self.workloads:
            raise ValueError(f"unknown workload(s) {bad}; choose from {', '.join(WORKLOADS)}")
        if len(self.queries) < max(CALLS[w] for w in self.workloads):
            raise ValueError(f"need at least {max(CALLS.values())} queries, got {self.queries}")

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index``: H x W x 3 uint8 RGB noise, a different one per index."""
        if index not in self._frames:
            rng = np.random.default_rng([self.seed, index])
            self._frames = {index: rng.integers(0, 256, (self.height, self.width, 3), np.uint8)}
        return self._frames[index]

    def objects(self, n: int) -> list[AnswerObject]:
        """``n`` answer objects side by side in the reasoner's 840 x 840 resize coordinates: a
        box and as many points inside it as the family's answer has (one at the centre; two on
        its vertical midline)."""
        n_points = len(get_family(self.family).sam2.point_labels)
        out = []
        width = (REASONER_SIZE - 80) // n
        for k in range(n):
            x1 = 40 + k * width
            box = (x1, 210, x1 + width - 40, 630)
            cx = (box[0] + box[2]) // 2
            ys = (
                (420,)
                if n_points == 1
                else tuple(315 + 210 * i // (n_points - 1) for i in range(n_points))
            )
            out.append(AnswerObject(box=box, points=tuple((cx, y) for y in ys)))
        return out

    def answer(self, n: int) -> str:
        """The generation text naming :meth:`objects` ``(n)`` in the family's answer form."""
        return get_family(self.family).format_answer(
            self.objects(n), reasoning="fixed benchmark answer"
        )

    def image_objects(self, n: int) -> list[ObjectPrompt]:
        """:meth:`objects` in original-image pixels, with the family's mapping."""
        return get_family(self.family).to_image_pixels(self.objects(n), (self.height, self.width))

    def sam2_prompts(self, n: int) -> list[ObjectSamPrompt]:
        """What SAM2 gets for :meth:`image_objects` ``(n)``: the family's points and labels."""
        rule = get_family(self.family).sam2
        return [rule.for_object(o) for o in self.image_objects(n)]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_frames")
        d["queries"], d["workloads"] = list(self.queries), list(self.workloads)
        return d


def run_workloads(
    call: Call, inp: BenchInputs, warmup: int, iters: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Warm-up + measured iterations of each workload; a new frame per iteration.

    Returns ``{workload: {"stats": per-call stage stats, "frame": stats of the summed time of
    the frame's calls, "calls": calls per frame}}``.
    """
    out: dict[str, Any] = {}
    index = 0
    for name in inp.workloads:
        rows: list[dict[str, float]] = []
        frames: list[float] = []
        t0 = time.perf_counter()
        for it in range(warmup + iters):
            index += 1
            frame = inp.frame(index)
            frame_rows = [
                call(frame, inp.queries[q], OBJECTS[name], q == 0) for q in range(CALLS[name])
            ]
            if it >= warmup:
                rows += frame_rows
                frames.append(sum(r["total"] for r in frame_rows))
        out[name] = {"stats": aggregate(rows), "frame": summarize(frames), "calls": CALLS[name]}
        log(f"    {name}: {warmup + iters} frames in {time.perf_counter() - t0:.1f} s")
    return out


def overlap_efficiency(stats: dict[str, dict[str, float]]) -> float | None:
    """End to end / (reasoner + SAM2 decode + post-processing), p50s: 1.0 means the SAM2
    encode and the pre-processing cost nothing on top of the reasoner (fully hidden)."""
    try:
        parts = sum(stats[k]["p50"] for k in ("reason", "sam_decode", "postprocess"))
    except KeyError:
        return None
    return stats["total"]["p50"] / parts if parts > 0 else None
