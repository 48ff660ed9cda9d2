"""``segzero-edge track VIDEO_OR_FRAME_DIR QUERY --out DIR``: reason once, track every frame.

Frames come from a folder of images (sorted by name, numbers in names compared as numbers),
from an animated image Pillow reads (GIF, APNG, animated WebP, multi-page TIFF), or through
OpenCV (the ``[camera]`` extra) from a video file, a camera (``0``, ``/dev/video0``), a
GStreamer pipeline or an RTSP URL (live sources need ``--max-frames``; see
:mod:`segzero_edge.camera`).

Writes to ``DIR``: ``masks/00000.png`` ... (the union of the tracked masks, 255 inside; with
several objects also ``masks/00000_obj1.png`` ...), ``overlay.gif`` (each frame drawn by
``TrackedSegmentation.plot``: masks in each object's colour, boxes, labels, and a header in
words such as "frame 3 - tracking - object 1 present"; "random weights" stamped for the demo
bundle), and ``track.json`` (per frame the result's JSON without masks: boxes,
``iou_predictions``, ``object_score_logits``, ``present``, mask areas, ``reasoned``, stage
timings; plus the reasoning), and the
marker ``.segzero-edge-owner.json`` (:mod:`segzero_edge.owned`). ``DIR`` must be new, empty,
or an earlier run's output (that marker), which is then replaced as a whole; it may not be
or hold the input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..camera import VIDEO_SUFFIXES
from ..errors import CommandError, require
from ..options import finite_float
from .segment import add_family_argument, resolve_bundle

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
GIF_MAX_SIDE = 480


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "track",
        help="reason once on the first frame, then track the objects through the frames",
        description=(
            "Run the reasoner on the first frame of VIDEO_OR_FRAME_DIR for QUERY, then follow "
            "the objects it names with SAM2's video memory on every frame (no reasoner). "
            "Writes per-frame masks, overlay.gif and track.json to --out. Without --bundle: "
            "$SEGZERO_BUNDLE (a bundle folder), else the tiny demo bundle (random weights, "
            "meaningless masks), built on first use."
        ),
    )
    p.add_argument(
        "frames",
        metavar="VIDEO_OR_FRAME_DIR",
        help="folder of frames (JPEG/PNG/...), an animated GIF/APNG/WebP/TIFF, or with the "
        "[camera] extra a video file, camera (0, /dev/video0), GStreamer pipeline or RTSP URL",
    )
    p.add_argument(
        "query", metavar="QUERY", help='what to find, e.g. "the thing I can use to cut the bread"'
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (segzero-edge export)")
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument(
        "--rereason-after",
        type=int,
        default=None,
        metavar="N",
        help="re-run the reasoner after N frames in a row with a lost object (default: never)",
    )
    p.add_argument(
        "--score-threshold",
        type=finite_float,
        default=0.0,
        help="object score logit at or below which an object counts as lost (default 0)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--fps", type=finite_float, default=10.0, help="frame rate of overlay.gif")
    p.add_argument("--no-gif", action="store_true", help="do not write overlay.gif")
    p.add_argument("--no-grammar", action="store_true", help="decode without the answer grammar")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap the reasoner's generation (thinking part with the grammar)",
    )
    add_family_argument(p)
    p.set_defaults(func=run)


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_source(path: Path, max_frames: int | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """``(frame count, iterator of H x W x 3 uint8 frames)`` of a folder or animated image.

    Raises :class:`CommandError` for a missing path, an empty folder, a video file, or a file
    Pillow cannot read.
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from ..image import load_image

    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise CommandError(
            f"{path} is a video file; the runtime has no video decoder. Extract its frames "
            f"first, e.g. `ffmpeg -i {path.name} frames/%05d.jpg`, and pass the folder"
        )
    if not path.exists():
        raise CommandError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(
            (f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()),
            key=_natural_key,
        )
        if not files:
            raise CommandError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files = files[:max_frames] if max_frames else files
        _check_frames(files)

        def from_dir() -> Iterator[np.ndarray]:
            for f in files:
                yield load_image(f)

        return len(files), from_dir()
    try:
        with Image.open(path) as img:
            n = int(getattr(img, "n_frames", 1))
    except (UnidentifiedImageError, OSError) as e:
        raise CommandError(f"cannot read {path}: {e}") from None
    n = min(n, max_frames) if max_frames else n

    def from_file() -> Iterator[np.ndarray]:
        with Image.open(path) as img:
            for i, frame in enumerate(ImageSequence.Iterator(img)):
                if i >= n:
                    break
                yield load_image(frame.convert("RGB"))

    return n, from_file()


def input_frames(source: str, max_frames: int | None) -> tuple[int | None, Iterator[np.ndarray]]:
    """``(frame count or None, frames)`` of what ``track`` was given: a video file, camera,
    GStreamer pipeline or stream URL through OpenCV (:mod:`segzero_edge.camera`, the
    ``[camera]`` extra; a live source needs ``max_frames`` and hands out its newest frames),
    else a folder or animated image (:func:`frame_source`)."""
    from .. import camera

    kind = camera.source_kind(source)
    if kind == "file" and Path(source).suffix.lower() not in VIDEO_SUFFIXES:
        return frame_source(Path(source), max_frames)
    if kind == "file":
        require("cv2", camera.EXTRA, f"reading the video file {source}")
        if not Path(source).is_file():
            raise CommandError(f"{source} does not exist")
        cap = camera.open_capture(source)
        n = camera.frame_count(cap)
        cap.release()
        n = min(n, max_frames) if n and max_frames else n
        return n, camera.read_frames(source, max_frames)
    if max_frames is None:
        raise CommandError(f"{source} is a live {kind} source: give --max-frames")

    def live() -> Iterator[np.ndarray]:
        with camera.stream(source) as frames:
            for i, f in enumerate(frames):
                if i >= max_frames:
                    return
                yield f.image

    return None, live()


def clip_length(source: str, n_frames: int | None) -> int | None:
    """The ``num_frames`` the tracker gets for ``source`` (``n_frames`` from
    :func:`input_frames`): the count of a folder or an animated image, which is exact, else
    ``None`` (tracked as a stream). A video container's ``CAP_PROP_FRAME_COUNT`` is an
    estimate for some formats (from its duration and rate): a clip longer than it says would
    be refused part-way, at the first frame past the count."""
    from .. import camera

    video = Path(source).suffix.lower() in VIDEO_SUFFIXES
    return n_frames if camera.source_kind(source) == "file" and not video else None


def _check_frames(files: list[Path]) -> None:
    """Read every frame's header before any model work: each must be an image Pillow reads,
    all of one size (after EXIF orientation, as they will load). Raises :class:`CommandError`
    naming the first file that is not."""
    from ..image import image_size

    first: tuple[int, int] | None = None
    for f in files:
        try:
            w, h = image_size(f)  # "cannot read image F: ..." / "image F is too large ..."
        except (OSError, ValueError) as e:
            raise CommandError(str(e)) from None
        if first is None:
            first = (w, h)
        elif (w, h) != first:
            raise CommandError(
                f"{f.name} is {w} x {h} but {files[0].name} is {first[0]} x {first[1]}: "
                "every frame of a clip must have the same size"
            )


def overlay_frame(image: np.ndarray, result: Any, stamp: str | None = None) -> Any:
    """A GIF frame: ``result.plot(image)`` (its header says what happened on the frame, see
    ``TrackedSegmentation.describe``), ``stamp`` in a corner, at most ``GIF_MAX_SIDE`` wide."""
    from PIL import Image

    pic = Image.fromarray(result.plot(image, stamp=stamp), "RGB")
    scale = GIF_MAX_SIDE / max(pic.size)
    if scale < 1:
        pic = pic.resize((round(pic.width * scale), round(pic.height * scale)))
    return pic


def _frame_json(result: Any, name: str) -> dict[str, Any]:
    data: dict[str, Any] = result.to_json(masks=False)  # the masks are the PNGs
    for key in ("reasoning", "answer_raw", "query"):
        data.pop(key, None)
    data["file"] = name
    return data


def check_out_folder(out: Path, frames: Path) -> None:
    """Before any model work: ``out`` can take the output. It must not be the input nor hold
    it, and must be absent, an empty folder, or the output of an earlier ``track`` run (its
    marker, :data:`segzero_edge.owned.TRACK_OUTPUT_FORMAT`, which is replaced as a whole);
    its parent must take new files. Raises :class:`CommandError` naming the problem."""
    from ..owned import TRACK_OUTPUT_FORMAT, check_replaceable

    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; give a folder for the masks, GIF and JSON")
    target, source = Path(os.path.realpath(out)), Path(os.path.realpath(frames))
    if target == source or target in source.parents:
        raise CommandError(
            f"--out {out} is or holds the input {frames}: the output folder is replaced as a "
            "whole; give another folder"
        )
    try:
        check_replaceable(out, (TRACK_OUTPUT_FORMAT,), "--out folder")
    except FileExistsError as e:
        raise CommandError(f"--out {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    # a real file, as `segment` checks (root passes os.access checks)
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".", suffix=".check"):
            pass
    except OSError as e:
        raise CommandError(
            f"--out {out}: cannot write files in {out.parent} ({e.strerror or e})"
        ) from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..fileio import atomic_dir, atomic_path
    from ..gif import GifWriter
    from ..overlay import mask_image
    from ..owned import RANDOM_WEIGHTS_STAMP, TRACK_OUTPUT_FORMAT, random_weights
    from ..pipeline import SegZeroEdge

    if args.max_frames is not None and args.max_frames < 1:
        raise CommandError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps <= 0:
        raise CommandError(f"--fps must be > 0, got {args.fps}")
    if args.rereason_after is not None and args.rereason_after < 1:
        raise CommandError(f"--rereason-after must be >= 1, got {args.rereason_after}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise CommandError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    n_frames, frames = input_frames(args.frames, args.max_frames)
    out: Path = args.out
    check_out_folder(out, Path(args.frames))
    bundle = resolve_bundle(args.bundle)
    stamp = RANDOM_WEIGHTS_STAMP if random_weights(bundle) else None
    # the whole folder appears at the end, complete (an earlier run's is replaced then); a
    # failure part-way leaves nothing behind
    with (
        atomic_dir(out, overwrite=True, owner=TRACK_OUTPUT_FORMAT) as dst,
        contextlib.ExitStack() as files,
    ):
        (dst / "masks").mkdir()
        # each overlay frame goes to disk as it is made: memory stays one frame, any clip length
        gif = None
        if not args.no_gif:
            duration = max(int(1000 / args.fps), 20)
            gif = files.enter_context(GifWriter(dst / "overlay.gif", duration_ms=duration))
        records: list[dict[str, Any]] = []
        reasoner_opts = (
            {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
        )
        with SegZeroEdge.from_bundle(
            bundle,
            segmenter_backend=args.segmenter_backend,
            grammar=not args.no_grammar,
            family=args.family,
            **reasoner_opts,
        ) as model:
            bar = tqdm(total=n_frames, desc="track", unit="frame", disable=bool(args.quiet))
            tracker = None
            try:
                for i, frame in enumerate(frames):
                    if tracker is None:
                        tracker = model.track(
                            frame,
                            args.query,
                            rereason_after=args.rereason_after,
                            score_threshold=args.score_threshold,
                            num_frames=clip_length(args.frames, n_frames),
                        )
                        result = tracker.last
                    else:
                        result = tracker.update(frame)
                    name = f"{i:05d}.png"
                    with atomic_path(dst / "masks" / name) as tmp:
                        mask_image(result.mask).save(tmp, format="PNG")
                    if len(result.object_masks) > 1:
                        for k, m in enumerate(result.object_masks, start=1):
                            with atomic_path(dst / "masks" / f"{i:05d}_obj{k}.png") as tmp:
                                mask_image(m).save(tmp, format="PNG")
                    if gif is not None:
                        gif.add(overlay_frame(frame, result, stamp))
                    records.append(_frame_json(result, name))
                    bar.set_postfix_str(
                        f"{result.timings.get('total', 0.0) * 1000:.0f} ms, "
                        f"{sum(result.present)}/{len(result.present)} present"
                    )
                    bar.update()
            finally:
                bar.close()
            seed = tracker.seed if tracker is not None else None
        if gif is not None:
            gif.close()
        tracked = [r["timings"]["total"] for r in records if not r["reasoned"]]
        summary = {
            "query": args.query,
            "bundle": str(bundle),
            "frames": len(records),
            "reasoned_frames": [r["frame_index"] for r in records if r["reasoned"]],
            "mean_update_ms": 1000 * float(np.mean(tracked)) if tracked else None,
            "reasoning": seed.reasoning if seed else "",
            "answer_raw": seed.answer_raw if seed else "",
            "per_frame": records,
        }
        with atomic_path(dst / "track.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
    mean = summary["mean_update_ms"]
    print(
        f"{len(records)} frames -> {out} (reasoned on frames {summary['reasoned_frames']}; "
        + (f"update {mean:.0f} ms/frame)" if mean is not None else "no tracked frame)"),
        file=sys.stderr,
    )
    return 0
