"""What the ROS 2 node does, without rclpy: the newest camera frame in, result messages out.

The rclpy node (``ros2/segzero_edge_ros``) only moves messages: its image callback hands each
incoming message to :meth:`NodeCore.on_image` (a :class:`~segzero_edge.ros.latest.LatestSlot`:
a frame not taken before the next one arrives is dropped, never queued), its query callback
calls :meth:`NodeCore.on_query`, a worker thread calls :meth:`NodeCore.step` in a loop, and
``publish(topic, message)`` turns each plain message into its rclpy twin
(:func:`segzero_edge.ros.messages.to_ros`). Topics are relative (``detections``, ``mask``,
``mask/object_<i>``, ``overlay``, ``reasoning``; :mod:`segzero_edge.ros.topics`), so the
node's namespace and remappings place them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import BackendError
from .images import message_to_frame
from .latest import LatestSlot
from .messages import CompressedImage, Image, from_ros
from .node_config import NodeConfig
from .processor import FrameProcessor, check_queries
from .topics import output_topics

if TYPE_CHECKING:
    from ..pipeline import SegZeroEdge

Publish = Callable[[str, Any], None]
"""``publish(relative topic, plain message)``."""


class NodeCore:
    """The node's work for one ``model`` and ``config``; ``publish`` sends a message and
    ``log`` reports a skipped frame or a refused query (one line)."""

    def __init__(
        self,
        model: SegZeroEdge,
        config: NodeConfig,
        publish: Publish,
        log: Callable[[str], None] = print,
    ) -> None:
        self.model = model
        self.config = config
        self.publish = publish
        self.log = log
        self.slot: LatestSlot[Any] = LatestSlot()
        self._image_type = CompressedImage if config.compressed else Image
        self._lock = threading.Lock()
        self._pending: str | None = None
        self.processor: FrameProcessor | None = None
        self.processed = 0
        if config.query:
            self.processor = self._make_processor(config.query)

    def _make_processor(self, query: str) -> FrameProcessor:
        return FrameProcessor(
            self.model,
            [query],
            track=self.config.track,
            rereason_after=self.config.rereason_after,
            score_threshold=self.config.score_threshold,
            overlay=self.config.publish_overlay,
        )

    def on_image(self, msg: Any) -> None:
        """Keep ``msg`` (an rclpy or plain Image / CompressedImage) as the newest frame
        (ignored once closed: a callback may still run while the node shuts down)."""
        with contextlib.suppress(RuntimeError):
            self.slot.put(msg)

    def on_query(self, text: str) -> None:
        """Use ``text`` as the query from the next frame on (trackers re-seeded); a blank
        query is logged and ignored."""
        try:
            (query,) = check_queries([text])
        except ValueError as e:
            self.log(f"ignored query: {e}")
            return
        with self._lock:
            self._pending = query.strip()

    def step(self, timeout: float | None = 0.1) -> bool:
        """Process the newest frame (waiting up to ``timeout`` s for one) and publish its
        messages; False when there was none, no query yet, or the frame failed (logged)."""
        raw = self.slot.get(timeout)
        if raw is None:
            return False
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            if self.processor is None:
                self.processor = self._make_processor(pending)
            else:
                self.processor.set_queries([pending])
        if self.processor is None:
            return False  # no query yet: the frame is dropped
        try:
            msg = from_ros(self._image_type, raw)
            frame = message_to_frame(msg)
            (messages,) = self.processor.process(frame, msg.header)
        except (ValueError, BackendError) as e:
            self.log(f"skipped a frame: {e}")
            return False
        (topics,) = output_topics("", 1)
        self.publish(topics.detections, messages.detections)
        self.publish(topics.mask, messages.mask)
        for i, mask in sorted(messages.object_masks.items()):
            self.publish(topics.object_mask(i), mask)
        if messages.overlay is not None:
            self.publish(topics.overlay, messages.overlay)
        if messages.reasoning is not None:
            self.publish(topics.reasoning, messages.reasoning)
        self.processed += 1
        return True

    def close(self) -> None:
        """Stop taking frames and free the trackers (the model's owner closes the model)."""
        self.slot.close()
        if self.processor is not None:
            self.processor.close()
