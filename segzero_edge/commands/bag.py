"""``segzero-edge bag IN.mcap --image-topic T --query Q -o OUT.mcap``: segment a rosbag2 file.

Reads a rosbag2 MCAP file, runs the model on every message of the image topic
(``sensor_msgs/Image`` in any encoding :mod:`segzero_edge.ros.images` reads, or
``CompressedImage`` jpeg / png), and writes a new rosbag2 MCAP file holding every input record
unchanged plus the results under ``--namespace`` (topics: :mod:`segzero_edge.ros.topics`),
each with the input image's header (stamp, frame_id) and log / publish time. A frame that
fails (a bad encoding, a backend error) is reported and skipped; the exit code is then 1.
The output appears complete at the end (written beside it, then renamed); the input is never
written. Needs the ``[ros]`` extra (``mcap``, ``mcap-ros2-support``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import BackendError, CommandError
from .segment import add_family_argument, resolve_bundle


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bag",
        help="segment (or track) the images of a rosbag2 MCAP file into a new one",
        description=(
            "Run the model on each image of --image-topic in IN.mcap (a rosbag2 MCAP file) "
            "for each --query and write OUT.mcap: every input topic as it was, plus "
            "Detection2DArray, mono8 masks, an rgb8 overlay and the reasoning under "
            "--namespace, stamped with the input images' headers. Without --bundle the tiny "
            "demo bundle (random weights, meaningless masks) is built on first use."
        ),
        epilog=(
            "Topics under NS (default /segzero): NS/detections, NS/mask (union), "
            "NS/mask/object_<i>, NS/overlay, NS/reasoning; with several queries "
            "NS/query_<k>/... per query. Play the output with `ros2 bag play -s mcap OUT.mcap`."
        ),
    )
    p.add_argument("input", metavar="IN.mcap", type=Path, help="rosbag2 MCAP file to read")
    p.add_argument("--image-topic", required=True, help="topic of Image or CompressedImage")
    p.add_argument(
        "--query", action="append", required=True, help="what to find (repeat for several)"
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="MCAP file to write")
    p.add_argument("--namespace", default="/segzero", help="prefix of the output topics")
    p.add_argument(
        "--track",
        action="store_true",
        help="reason once on the first frame, then track the objects (SAM2 video memory)",
    )
    p.add_argument(
        "--rereason-after",
        type=int,
        default=None,
        metavar="N",
        help="with --track: re-run the reasoner after N frames in a row with a lost object",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.0,
        help="with --track: object score logit at or below which an object counts as lost",
    )
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay images")
    p.add_argument("--max-frames", type=int, default=None, help="process at most N images")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.mcap")
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (segzero-edge export)")
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument("--no-grammar", action="store_true", help="decode without the answer grammar")
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap the reasoner's generation")
    add_family_argument(p)
    p.set_defaults(func=run)


def _check_paths(src: Path, dst: Path, force: bool) -> None:
    if not src.is_file():
        raise CommandError(f"{src} does not exist or is not a file")
    if dst.is_dir():
        raise CommandError(f"-o {dst} is a directory; give a file name such as out.mcap")
    same = dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst))
    if same:
        raise CommandError(f"-o {dst} is the input file; the input is never overwritten")
    if os.path.lexists(dst) and not force:
        raise CommandError(f"-o {dst} already exists (pass --force to replace it)")
    if os.path.lexists(dst) and not dst.is_file():
        raise CommandError(f"-o {dst} exists and is not a regular file")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dst.parent, prefix=f".{dst.name}.", suffix=".check"):
            pass
    except OSError as e:
        raise CommandError(
            f"-o {dst}: cannot write files in {dst.parent} ({e.strerror or e})"
        ) from None


def _check_topic(topics: dict[str, tuple[str, int]], topic: str) -> int:
    from ..ros.bag import IMAGE_TYPES

    images = sorted(t for t, (name, _) in topics.items() if name in IMAGE_TYPES)
    if topic not in topics:
        raise CommandError(
            f"--image-topic {topic} is not in the bag; its image topics: "
            f"{', '.join(images) or 'none'}"
        )
    name, count = topics[topic]
    if name not in IMAGE_TYPES:
        raise CommandError(
            f"--image-topic {topic} carries {name or 'no schema'}, not "
            f"{' or '.join(IMAGE_TYPES)}; image topics: {', '.join(images) or 'none'}"
        )
    return count


def _write_results(writer: Any, topics: Any, messages: Any, log_time: int, pub: int) -> None:
    writer.write(topics.detections, messages.detections, log_time, pub)
    writer.write(topics.mask, messages.mask, log_time, pub)
    for i, m in sorted(messages.object_masks.items()):
        writer.write(topics.object_mask(i), m, log_time, pub)
    if messages.overlay is not None:
        writer.write(topics.overlay, messages.overlay, log_time, pub)
    if messages.reasoning is not None:
        writer.write(topics.reasoning, messages.reasoning, log_time, pub)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..fileio import atomic_path
    from ..pipeline import SegZeroEdge
    from ..ros import bag
    from ..ros.images import message_to_frame
    from ..ros.processor import FrameProcessor, check_queries
    from ..ros.topics import check_namespace, output_topics

    for name in ("max_frames", "rereason_after", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.rereason_after is not None and not args.track:
        raise CommandError("--rereason-after needs --track")
    queries = check_queries(args.query)
    namespace = check_namespace(args.namespace)
    src, dst = Path(args.input), Path(args.out)
    _check_paths(src, dst, args.force)
    targets = output_topics(namespace, len(queries))
    with open(src, "rb") as stream:
        reader = bag.open_reader(stream)
        topics = bag.topic_types(reader)
        taken = {t.detections for t in targets} | {t.mask for t in targets}
        clash = sorted(taken & set(topics))
        if clash:
            raise CommandError(
                f"the bag already has {', '.join(clash)}; choose another --namespace"
            )
        n_images = _check_topic(topics, args.image_topic)
        total = min(n_images, args.max_frames) if args.max_frames else n_images
        bundle = resolve_bundle(args.bundle)
        opts = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
        failed: list[str] = []
        done = 0
        with SegZeroEdge.from_bundle(
            bundle,
            segmenter_backend=args.segmenter_backend,
            grammar=not args.no_grammar,
            family=args.family,
            **opts,
        ) as model:
            processor = FrameProcessor(
                model,
                queries,
                track=args.track,
                rereason_after=args.rereason_after,
                score_threshold=args.score_threshold,
                overlay=not args.no_overlay,
            )
            decode = bag.ImageDecoder()
            bar = tqdm(total=total, desc="bag", unit="frame", disable=bool(args.quiet))
            seen = 0
            try:
                with atomic_path(dst) as tmp, open(tmp, "wb") as out:
                    writer = bag.BagWriter(out)
                    writer.copy_extras(reader)
                    for schema, channel, message in bag.iter_records(reader):
                        writer.copy(schema, channel, message)
                        if channel.topic != args.image_topic or seen >= total:
                            continue
                        seen += 1
                        try:
                            msg = decode(schema, channel, message.data)
                            frame = message_to_frame(msg)
                            results = processor.process(frame, msg.header)
                        except (ValueError, BackendError) as e:
                            stamp = f"log time {message.log_time / 1e9:.9f} s"
                            failed.append(f"frame {seen - 1} ({stamp}): {e}")
                            tqdm.write(f"skipped {failed[-1]}", file=sys.stderr)
                        else:
                            for t, messages in zip(targets, results, strict=True):
                                _write_results(
                                    writer, t, messages, message.log_time, message.publish_time
                                )
                            done += 1
                        bar.update()
                    writer.finish()
            finally:
                bar.close()
                processor.close()
    print(
        f"{done} of {total} frames -> {dst}"
        + (f"; {len(failed)} skipped (first: {failed[0]})" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0
