"""rosbag2 MCAP files: read camera images, copy every record, add messages (no ROS install).

Reading and writing go through ``mcap`` and ``mcap-ros2-support`` (the ``[ros]`` extra, pure
Python): input records are copied byte for byte (schemas, channels with their QoS metadata,
messages with their log / publish times and sequence numbers, metadata and attachments), and
new messages are CDR-encoded from the plain messages of :mod:`segzero_edge.ros.messages`
against the ``ros2msg`` schemas of :mod:`segzero_edge.ros.definitions`. The output uses the
``ros2`` profile, ``cdr`` message encoding and ``pkg/msg/Type`` schema names, as rosbag2's
MCAP storage plugin writes them (``ros2 bag play -s mcap``, Foxglove and ``mcap`` read it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..errors import require
from .definitions import full_name, schema_text
from .messages import CompressedImage, Image, from_ros

EXTRA = "ros"
_FOREVER = "    sec: 9223372036\n    nsec: 854775807\n"  # rmw's infinite duration, as recorded
OUTPUT_QOS = (
    "- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n"
    f"  deadline:\n{_FOREVER}  lifespan:\n{_FOREVER}  liveliness: 1\n"
    f"  liveliness_lease_duration:\n{_FOREVER}  avoid_ros_namespace_conventions: false"
)
"""``offered_qos_profiles`` of the topics written here (the ros2 MCAP profile requires the key
on every channel): one reliable, volatile publisher, in the YAML ``ros2 bag record`` writes on
Humble (enum values of rmw; history "unknown" and depth 0 as the recorder sees them), which
``ros2 bag play`` offers again."""
IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
"""Schema names of the image topics read -> the message class they decode to."""


def _mcap() -> tuple[Any, Any, Any]:
    """``(mcap.reader, mcap.writer, mcap_ros2.decoder)``; :class:`MissingExtra` without them."""
    require("mcap", EXTRA, "reading and writing rosbag2 MCAP files")
    require("mcap_ros2", EXTRA, "reading and writing rosbag2 MCAP files")
    import mcap.reader
    import mcap.writer
    import mcap_ros2.decoder

    return mcap.reader, mcap.writer, mcap_ros2.decoder


@dataclass(frozen=True)
class Record:
    """One message record of a bag: its topic, schema name, times (ns) and raw CDR bytes."""

    topic: str
    schema_name: str
    log_time: int
    publish_time: int
    sequence: int
    data: bytes


def open_reader(stream: IO[bytes]) -> Any:
    """An ``mcap`` reader of ``stream`` (a seekable binary file) that checks each chunk's CRC
    as it reads it (chunks written without one are read unchecked). Raises ``ValueError`` when
    it is not an MCAP file or its summary is damaged."""
    reader_mod, _, _ = _mcap()
    from mcap.exceptions import McapError

    try:
        reader = reader_mod.make_reader(stream, validate_crcs=True)
        reader.get_header()
        reader.get_summary()
    except (McapError, EOFError, struct.error) as e:
        raise ValueError(f"not an MCAP file, or a damaged one ({e})") from None
    return reader


def topic_types(reader: Any) -> dict[str, tuple[str, int]]:
    """Topic -> (schema name, message count), from the file's summary (or a full scan)."""
    summary = reader.get_summary()
    out: dict[str, tuple[str, int]] = {}
    if summary is not None and summary.statistics is not None:
        counts = summary.statistics.channel_message_counts
        for cid, ch in summary.channels.items():
            schema = summary.schemas.get(ch.schema_id)
            name = schema.name if schema is not None else ""
            prev = out.get(ch.topic, (name, 0))[1]
            out[ch.topic] = (name, prev + counts.get(cid, 0))
        return out
    for schema, channel, _ in reader.iter_messages(log_time_order=False):
        name = schema.name if schema is not None else ""
        out[channel.topic] = (name, out.get(channel.topic, (name, 0))[1] + 1)
    return out


class ImageDecoder:
    """CDR bytes of an ``Image`` / ``CompressedImage`` record -> the plain message."""

    def __init__(self) -> None:
        _, _, decoder_mod = _mcap()
        self._factory = decoder_mod.DecoderFactory()

    def __call__(self, schema: Any, channel: Any, data: bytes) -> Image | CompressedImage:
        cls = IMAGE_TYPES.get(full_name(schema.name) if schema is not None else "")
        if cls is None:
            raise ValueError(
                f"topic {channel.topic} carries {schema.name if schema else 'no schema'}, "
                f"not {' or '.join(IMAGE_TYPES)}"
            )
        decode = self._factory.decoder_for(channel.message_encoding, schema)
        if decode is None:
            raise ValueError(
                f"topic {channel.topic}: cannot decode {channel.message_encoding!r} messages "
                f"with a {schema.encoding!r} schema (a ros2msg schema and cdr are needed)"
            )
        try:
            decoded = decode(data)
        except Exception as e:  # the CDR reader's errors are of several types
            raise ValueError(f"topic {channel.topic}: cannot decode a message: {e}") from None
        image: Image | CompressedImage = from_ros(cls, decoded)
        return image


def iter_records(reader: Any) -> Iterator[tuple[Any, Any, Any]]:
    """``(schema, channel, message)`` of every record, in log-time order.

    Raises ``ValueError`` when a record cannot be read (a damaged chunk: a CRC mismatch, data
    that does not decompress, a cut record), after the records before it.
    """
    records = reader.iter_messages(log_time_order=True)
    count = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as e:  # the reader's and its decompressors' errors are of several types
            raise ValueError(
                f"damaged MCAP file: cannot read the record after {count} good ones "
                f"({type(e).__name__}: {e})"
            ) from None
        count += 1
        yield record


class BagWriter:
    """Writes a rosbag2 MCAP file: records copied from a reader, and new plain messages."""

    def __init__(self, stream: IO[bytes]) -> None:
        _, writer_mod, _ = _mcap()
        import mcap_ros2
        from mcap_ros2._dynamic import serialize_dynamic

        self._serialize = serialize_dynamic
        self._writer = writer_mod.Writer(stream, compression=writer_mod.CompressionType.ZSTD)
        self._writer.start(
            profile="ros2", library=f"segzero-edge mcap-ros2/{mcap_ros2.__version__}"
        )
        self._schemas: dict[Any, int] = {}  # input schema id or our type name -> output id
        self._channels: dict[Any, int] = {}  # input channel id or our topic -> output id
        self._encoders: dict[str, Any] = {}

    def copy(self, schema: Any, channel: Any, message: Any) -> None:
        """Copy one input record as it is (its schema and channel registered on first use)."""
        key = ("in", channel.id)
        cid = self._channels.get(key)
        if cid is None:
            sid = 0
            if schema is not None:
                skey = ("in", schema.id)
                sid = self._schemas.get(skey, 0)
                if not sid:
                    sid = self._writer.register_schema(schema.name, schema.encoding, schema.data)
                    self._schemas[skey] = sid
            cid = self._writer.register_channel(
                channel.topic, channel.message_encoding, sid, dict(channel.metadata)
            )
            self._channels[key] = cid
        self._writer.add_message(
            channel_id=cid,
            log_time=message.log_time,
            data=message.data,
            publish_time=message.publish_time,
            sequence=message.sequence,
        )

    def copy_extras(self, reader: Any) -> None:
        """Copy the input's metadata and attachment records."""
        for meta in reader.iter_metadata():
            self._writer.add_metadata(meta.name, dict(meta.metadata))
        for att in reader.iter_attachments():
            self._writer.add_attachment(
                att.create_time, att.log_time, att.name, att.media_type, att.data
            )

    def write(self, topic: str, msg: Any, log_time: int, publish_time: int | None = None) -> None:
        """Write ``msg`` (a class of :mod:`segzero_edge.ros.messages`) on ``topic``."""
        ros_type = msg.ROS_TYPE
        encode = self._encoders.get(ros_type)
        if encode is None:
            encode = self._serialize(ros_type, schema_text(ros_type))[ros_type]
            self._encoders[ros_type] = encode
        cid = self._channels.get(topic)
        if cid is None:
            sid = self._schemas.get(ros_type)
            if sid is None:
                sid = self._writer.register_schema(
                    ros_type, "ros2msg", schema_text(ros_type).encode()
                )
                self._schemas[ros_type] = sid
            cid = self._writer.register_channel(
                topic, "cdr", sid, {"offered_qos_profiles": OUTPUT_QOS}
            )
            self._channels[topic] = cid
        self._writer.add_message(
            channel_id=cid,
            log_time=int(log_time),
            data=encode(msg),
            publish_time=int(log_time if publish_time is None else publish_time),
        )

    def finish(self) -> None:
        """Write the summary; the file is complete after this."""
        self._writer.finish()
