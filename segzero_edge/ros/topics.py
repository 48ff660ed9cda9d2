"""Names of the topics segzero-edge publishes (the bag command and the node share them).

Under a base ``B`` (``/segzero`` in a bag, the node's namespace for the node): ``B/detections``
(``vision_msgs/Detection2DArray``), ``B/mask`` (``mono8``, union of the objects),
``B/mask/object_<i>`` (``mono8``, object ``i``), ``B/overlay`` (``rgb8``), ``B/reasoning``
(``std_msgs/String``). With several queries each gets ``B/query_<k>/...`` (k from 1).
Names follow the ROS 2 topic name rules (tokens of letters, digits and ``_``, not starting
with a digit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_namespace(namespace: str) -> str:
    """``namespace`` without a trailing ``/``; ``ValueError`` when it is not ``/`` followed by
    ROS name tokens (``/segzero``, ``/robot/seg``)."""
    ns = namespace.rstrip("/")
    tokens = ns.split("/")
    if not namespace.startswith("/") or not all(_TOKEN.match(t) for t in tokens[1:]) or ns == "":
        raise ValueError(
            f"namespace {namespace!r} is not an absolute ROS name such as /segzero "
            "(letters, digits and _ between slashes, no token starting with a digit)"
        )
    return ns


@dataclass(frozen=True)
class OutputTopics:
    """The topics of one query's results under ``base``."""

    base: str

    def _join(self, name: str) -> str:
        return f"{self.base}/{name}" if self.base else name

    @property
    def detections(self) -> str:
        return self._join("detections")

    @property
    def mask(self) -> str:
        return self._join("mask")

    def object_mask(self, index: int) -> str:
        return self._join(f"mask/object_{index}")

    @property
    def overlay(self) -> str:
        return self._join("overlay")

    @property
    def reasoning(self) -> str:
        return self._join("reasoning")


def output_topics(base: str, n_queries: int) -> list[OutputTopics]:
    """One :class:`OutputTopics` per query: ``base`` itself for one query, else
    ``base/query_1``, ``base/query_2``, ... (``base`` "" gives relative names)."""
    if n_queries == 1:
        return [OutputTopics(base)]
    prefix = f"{base}/" if base else ""
    return [OutputTopics(f"{prefix}query_{k}") for k in range(1, n_queries + 1)]
