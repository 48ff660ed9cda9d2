"""The ROS node's parameters: names, defaults, and the checks they pass before any model work.

The node (``ros2/segzero_edge_ros``) declares :data:`PARAMETERS` and builds a
:class:`NodeConfig` from their values; a bad value is a ``ValueError`` naming the parameter.

- ``bundle`` (string, required): the bundle folder;
- ``query`` (string): what to find; empty means "wait for one on ``query_topic``";
- ``query_topic`` (string, default ``query``): ``std_msgs/String`` topic that replaces the
  query (the trackers are re-seeded on the next frame);
- ``compressed`` (bool): subscribe to ``sensor_msgs/CompressedImage`` instead of ``Image``;
- ``track`` (bool): reason once, then track with SAM2's video memory;
- ``rereason_after`` (int, 0 = never): with ``track``, re-run the reasoner after this many
  frames in a row with a lost object;
- ``score_threshold`` (double): with ``track``, object score logit at or below which an
  object counts as lost;
- ``publish_overlay`` (bool, default true): publish the ``rgb8`` overlay;
- ``segmenter_backend`` (``auto`` / ``tensorrt`` / ``onnxruntime``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARAMETERS: dict[str, Any] = {
    "bundle": "",
    "query": "",
    "query_topic": "query",
    "compressed": False,
    "track": False,
    "rereason_after": 0,
    "score_threshold": 0.0,
    "publish_overlay": True,
    "segmenter_backend": "auto",
}
"""Parameter name -> default (its type is the parameter's type)."""

BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class NodeConfig:
    bundle: str
    query: str
    query_topic: str
    compressed: bool
    track: bool
    rereason_after: int | None
    score_threshold: float
    publish_overlay: bool
    segmenter_backend: str

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> NodeConfig:
        """Check ``values`` (name -> value, as the node read them) and build the config.

        Raises ``ValueError`` naming an unknown parameter, a value of the wrong type, an empty
        ``bundle``, an empty ``query`` together with an empty ``query_topic``, a negative
        ``rereason_after``, or an unknown ``segmenter_backend``.
        """
        unknown = sorted(set(values) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
        v = {**PARAMETERS, **values}
        for name, default in PARAMETERS.items():
            value = v[name]
            kind = type(default)
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                v[name], ok = float(value), True
            if not ok:
                raise ValueError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
        if not v["bundle"].strip():
            raise ValueError("parameter bundle is required: the bundle folder to load")
        if not v["query"].strip() and not v["query_topic"].strip():
            raise ValueError("give a query, a query_topic to receive one on, or both")
        if v["rereason_after"] < 0:
            raise ValueError(
                f"parameter rereason_after must be >= 0 (0 = never), got {v['rereason_after']}"
            )
        if v["segmenter_backend"] not in BACKENDS:
            raise ValueError(
                f"parameter segmenter_backend must be one of {', '.join(BACKENDS)}, "
                f"got {v['segmenter_backend']!r}"
            )
        return cls(
            bundle=v["bundle"],
            query=v["query"].strip(),
            query_topic=v["query_topic"].strip(),
            compressed=v["compressed"],
            track=v["track"],
            rereason_after=v["rereason_after"] or None,
            score_threshold=v["score_threshold"],
            publish_overlay=v["publish_overlay"],
            segmenter_backend=v["segmenter_backend"],
        )
