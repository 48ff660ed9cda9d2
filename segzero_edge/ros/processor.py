"""One frame in, one :class:`~segzero_edge.ros.results.ResultMessages` per query out.

The bag command and the ROS node both drive the model through :class:`FrameProcessor`:
either every frame is segmented (``segment_many``: one SAM2 encoding and one reasoner image
prefix for all queries), or, with ``track=True``, the reasoner runs once per query on the
first frame and SAM2's video memory follows the objects on the next ones
(:meth:`SegZeroEdge.track <segzero_edge.pipeline.SegZeroEdge.track>`), re-reasoning after
``rereason_after`` lost frames or when :meth:`FrameProcessor.request_reasoning` asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image import NV12Frame
from ..pixels import nv12_to_rgb
from ..prompt import check_query
from ..tracking.result import TrackedSegmentation
from .messages import Header
from .results import ResultMessages, result_messages

if TYPE_CHECKING:
    from ..pipeline import SegZeroEdge
    from ..tracker import Tracker


def check_queries(queries: Sequence[str]) -> list[str]:
    """``queries`` as a list; ``ValueError`` when empty or when one breaks the query rule
    (:func:`segzero_edge.prompt.check_query`: blank, or not valid text)."""
    if isinstance(queries, str):
        queries = [queries]
    out = [str(q) for q in queries]
    if not out:
        raise ValueError("give at least one query")
    for q in out:
        check_query(q, "a query")
    return out


class FrameProcessor:
    """Runs ``model`` on each frame for fixed ``queries`` and builds the ROS messages.

    ``track``: reason once, then track (else segment every frame). ``rereason_after`` and
    ``score_threshold`` go to :class:`~segzero_edge.tracker.Tracker`. ``overlay``: also build
    the ``rgb8`` overlay (costs a copy of the frame). Not thread-safe: one caller at a time.
    """

    def __init__(
        self,
        model: SegZeroEdge,
        queries: Sequence[str],
        *,
        track: bool = False,
        rereason_after: int | None = None,
        score_threshold: float = 0.0,
        overlay: bool = True,
    ) -> None:
        if rereason_after is not None and (isinstance(rereason_after, bool) or rereason_after < 1):
            raise ValueError(f"rereason_after must be >= 1 or None, got {rereason_after!r}")
        self.model = model
        self.queries = check_queries(queries)
        self.track = bool(track)
        self.rereason_after = rereason_after
        self.score_threshold = float(score_threshold)
        self.overlay = bool(overlay)
        self._trackers: list[Tracker] | None = None
        self._reason_next = False

    def set_queries(self, queries: Sequence[str]) -> None:
        """New queries from the next frame on (trackers are re-seeded). ``ValueError`` for an
        empty list or a blank query, leaving the current queries."""
        self.queries = check_queries(queries)
        self._drop_trackers()

    def request_reasoning(self) -> None:
        """Track mode: re-run the reasoner on the next frame (segment mode always reasons)."""
        self._reason_next = True

    def _drop_trackers(self) -> None:
        for t in self._trackers or []:
            t.close()
        self._trackers = None

    def _results(self, frame: np.ndarray | NV12Frame) -> list[Any]:
        if not self.track:
            return list(self.model.segment_many(frame, self.queries))
        if self._trackers is None:
            trackers: list[Tracker] = []
            try:
                for q in self.queries:
                    trackers.append(
                        self.model.track(
                            frame,
                            q,
                            rereason_after=self.rereason_after,
                            score_threshold=self.score_threshold,
                        )
                    )
            except BaseException:
                for t in trackers:
                    t.close()
                raise
            self._trackers = trackers
            self._reason_next = False
            return [t.last for t in trackers]
        reason, self._reason_next = self._reason_next, False
        try:
            return [t.update(frame, reason=reason) for t in self._trackers]
        except BaseException:
            self._reason_next = reason
            raise

    def process(self, frame: np.ndarray | NV12Frame, header: Header) -> list[ResultMessages]:
        """The messages of each query for ``frame`` (H x W x 3 uint8 RGB or a host
        :class:`~segzero_edge.image.NV12Frame`), with ``header`` copied into each.

        Raises what the model raises (``ValueError`` for a bad frame, ``BackendError``); the
        processor's state is then as before the call.
        """
        results = self._results(frame)
        rgb = None
        if self.overlay:
            rgb = nv12_to_rgb(frame) if isinstance(frame, NV12Frame) else frame
        out = []
        for q, r in zip(self.queries, results, strict=True):
            reasoned = r.reasoned if isinstance(r, TrackedSegmentation) else True
            out.append(result_messages(r, header, q, image=rgb, reasoning=reasoned))
        return out

    def close(self) -> None:
        """Free the trackers (the model stays open: its owner closes it)."""
        self._drop_trackers()
