"""``segzero-edge segment IMAGE QUERY [QUERY ...]``: mask PNG, overlay PNG and JSON per query.

IMAGE is an image file, or through OpenCV (the ``[camera]`` extra, :mod:`segzero_edge.camera`)
one frame of a video file, a camera (``0``, ``/dev/video0``), a GStreamer pipeline or a stream
URL: ``--frame N`` of a video, the newest frame of a live source once N frames were read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CommandError, require
from ..families import FAMILIES
from ..layout import MANIFEST
from ..prompt import check_query

log = logging.getLogger(__name__)

DEFAULT_BUNDLE_ENV = "SEGZERO_BUNDLE"


def demo_bundle_dir() -> Path:
    """The demo bundle's folder: ``$XDG_CACHE_HOME/segzero-edge/tiny-bundle`` (default
    ``~/.cache``), the project's own cache folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "segzero-edge" / "tiny-bundle"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "segment",
        help="segment what one or more queries describe in an image",
        description=(
            "Run the reasoner and SAM2 on IMAGE for each QUERY. Several queries on one image "
            "share its SAM2 encoding and the reasoner's image prefix (only the 2nd..Nth "
            "query's own tokens are evaluated). Without --bundle: $SEGZERO_BUNDLE (a bundle "
            "folder), else the tiny demo bundle (random weights, meaningless masks) in "
            "~/.cache/segzero-edge/tiny-bundle, built on first use; that needs the [export] "
            "extra."
        ),
        epilog=(
            "With several queries, --out and --overlay name one file per query by adding its "
            "number (from 1, in the order given) before the suffix: --out mask.png writes "
            "mask-1.png, mask-2.png, ...; with one query the paths are used as given. --json "
            "prints JSON Lines: one JSON object per query per line, in the order given, with "
            "its 'query', boxes, points, 'iou_predictions' and the masks as COCO RLE "
            "(docs/results.md)."
        ),
    )
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="image file (JPEG/PNG/...), or with the [camera] extra a video file, camera "
        "(0, /dev/video0), GStreamer pipeline or RTSP URL (one frame: see --frame)",
    )
    p.add_argument(
        "query",
        metavar="QUERY",
        nargs="+",
        help='what to find, e.g. "the thing I can use to cut the bread"; several allowed',
    )
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (segzero-edge export)")
    p.add_argument("--out", type=Path, help="write the mask here as a PNG (see below)")
    p.add_argument(
        "--overlay",
        type=Path,
        help="write the picture of the result (result.plot(): each object's mask in its own "
        "colour, box, points, label) as PNG or JPEG by the suffix (see below)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per query per line (JSON Lines)"
    )
    p.add_argument(
        "--frame",
        type=int,
        default=None,
        metavar="N",
        help="video file: segment frame N (from 0; default 0); camera or stream: the newest "
        "frame once N frames were read (default 0), so its exposure can settle",
    )
    p.add_argument(
        "--segmenter-backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"]
    )
    p.add_argument("--no-grammar", action="store_true", help="decode without the answer grammar")
    add_family_argument(p)
    p.add_argument("--verify-hashes", action="store_true", help="check every file's sha256")
    p.set_defaults(func=run)


def add_family_argument(p: argparse.ArgumentParser) -> None:
    """``--family``: the bundle's model family, overriding its manifest (``segment``, ``track``)."""
    p.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        help="model family of the bundle's reasoner (default: the manifest's; needed for "
        "bundles exported before families were recorded)",
    )


def default_bundle() -> Path:
    """The bundle ``segzero-edge segment`` uses without ``--bundle``: ``$SEGZERO_BUNDLE`` when
    set, else the tiny demo bundle (random weights: meaningless masks) in
    :func:`demo_bundle_dir`, built on first use (needs the [export] extra, a few minutes).

    Raises :class:`~segzero_edge.errors.CommandError` when ``$SEGZERO_BUNDLE`` is not a
    bundle, the demo folder holds something else, or the exporter is not installed.
    """
    return resolve_bundle(None)


def resolve_bundle(path: Path | None) -> Path:
    """``path``, else ``$SEGZERO_BUNDLE``, else the demo bundle, built on first use by
    ``segzero-edge export --tiny``.

    ``$SEGZERO_BUNDLE`` must name a bundle (``CommandError`` otherwise): nothing is ever
    exported into it. The demo bundle is built only in :func:`demo_bundle_dir`, and only when
    that folder is absent, empty, or an earlier demo bundle (recognised by the marker the
    export wrote, :data:`segzero_edge.owned.DEMO_BUNDLE_FORMAT`); any other content is
    refused, never replaced. The export runs as a child process through the CLI (the runtime
    never imports the exporter); it needs the [export] extra.
    """
    from ..owned import DEMO_BUNDLE_FORMAT, owner_format
    from . import registered

    if path is not None:
        return path
    if os.environ.get(DEFAULT_BUNDLE_ENV):
        given = Path(os.environ[DEFAULT_BUNDLE_ENV])
        if not (given / MANIFEST).is_file():
            raise CommandError(
                f"{DEFAULT_BUNDLE_ENV}={given} is not a bundle folder (no {MANIFEST}); point it "
                "at a folder `segzero-edge export` wrote, or unset it to use the demo bundle"
            )
        return given
    path = demo_bundle_dir()
    if (path / MANIFEST).is_file():
        return path
    if os.path.lexists(path) and not (
        path.is_dir()
        and not path.is_symlink()
        and (owner_format(path) == DEMO_BUNDLE_FORMAT or not any(path.iterdir()))
    ):
        raise CommandError(
            f"{path} (the demo bundle's folder) holds something that is not a demo bundle; "
            "it is left alone: move it away, or pass --bundle"
        )
    if "export" not in registered():
        raise CommandError(
            "no --bundle given, and building the demo bundle needs the exporter: "
            "pip install 'segzero-edge[export]' (or pass --bundle)"
        )
    log.warning("building the tiny demo bundle in %s (random weights: masks are meaningless)", path)
    quiet = [] if log.isEnabledFor(logging.INFO) else ["-q"]  # its steps only with -v
    cmd = [sys.executable, "-m", "segzero_edge.cli", "export", "--tiny", "--force", *quiet]
    done = subprocess.run([*cmd, "-o", str(path)], check=False)
    if done.returncode != 0:
        raise CommandError(f"building the demo bundle failed (exit {done.returncode})")
    return path


def _check_writable(flag: str, dest: Path) -> None:
    """Before any model work: ``dest`` names a file whose folder takes new files."""
    if dest.is_dir():
        raise CommandError(f"{flag} {dest} is a directory; give a file name (e.g. mask.png)")
    if os.path.lexists(dest) and not (dest.is_file() or dest.is_symlink()):
        raise CommandError(
            f"{flag} {dest} exists and is not a regular file (a device, FIFO or socket); "
            "give a file name"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # a real file, not os.access: root passes access checks on read-only or special folders
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".check"):
            pass
    except OSError as e:
        raise CommandError(
            f"{flag} {dest}: cannot write files in {dest.parent} ({e.strerror or e})"
        ) from None


def numbered(path: Path, index: int, count: int) -> Path:
    """``path`` for a single query; ``stem-<index+1><suffix>`` when there are several."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def output_paths(out: Path | None, overlay: Path | None, count: int) -> list[tuple[str, int, Path]]:
    """Every file ``segment`` writes for ``count`` queries, as ``(flag, query index, path)``:
    the masks (``--out``), then the overlays (``--overlay``), numbered by :func:`numbered`."""
    return [
        (flag, i, numbered(dest, i, count))
        for flag, dest in (("--out", out), ("--overlay", overlay))
        if dest is not None
        for i in range(count)
    ]


def check_outputs(outputs: list[tuple[str, int, Path]]) -> None:
    """Before any model work: every output names a file that can be written, and no two
    name the same file (after following symbolic links). Raises :class:`CommandError`
    naming the first that does not."""
    seen: dict[str, tuple[str, Path]] = {}
    for flag, _, dest in outputs:
        key = os.path.realpath(dest)
        if key in seen:
            other, first = seen[key]
            raise CommandError(
                f"{other} {first} and {flag} {dest} name the same file: one would overwrite "
                "the other; give distinct names"
            )
        seen[key] = (flag, dest)
        _check_writable(flag, dest)


def input_image(source: str, frame: int | None) -> np.ndarray:
    """The H x W x 3 uint8 RGB image ``segment`` works on: an image file (Pillow), or one frame
    of a video file or live source (OpenCV, :func:`segzero_edge.camera.grab_frame`).

    Raises :class:`CommandError` for ``--frame`` with an image file or below 0, a video file
    that does not exist, or OpenCV missing (naming the extra); ``ValueError`` for a source
    OpenCV cannot open or that ends before the frame; what :func:`load_image` raises.
    """
    from .. import camera
    from ..image import load_image

    if frame is not None and frame < 0:
        raise CommandError(f"--frame must be >= 0, got {frame}")
    if not camera.is_video(source):
        if frame is not None:
            raise CommandError(f"--frame is for a video file or a live source, not {source}")
        return load_image(source)
    require("cv2", camera.EXTRA, f"reading a frame of {source}")
    if not camera.is_live(source) and not Path(source).is_file():
        raise CommandError(f"{source} does not exist")
    return camera.grab_frame(source, frame or 0)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..fileio import atomic_paths
    from ..overlay import mask_image
    from ..owned import RANDOM_WEIGHTS_STAMP, random_weights
    from ..pipeline import SegZeroEdge
    from ..plotting import SAVE_FORMATS

    outputs = output_paths(args.out, args.overlay, len(args.query))
    check_outputs(outputs)
    if args.overlay is not None and args.overlay.suffix.lower() not in SAVE_FORMATS:
        raise CommandError(
            f"--overlay {args.overlay}: give a file name ending in "
            f"{' or '.join(sorted(SAVE_FORMATS))}"
        )
    for query in args.query:
        try:
            check_query(query, f"the query {query!a}")
        except ValueError as e:
            raise CommandError(str(e)) from None
    image = input_image(args.image, args.frame)
    bundle = resolve_bundle(args.bundle)
    with SegZeroEdge.from_bundle(
        bundle,
        segmenter_backend=args.segmenter_backend,
        grammar=not args.no_grammar,
        verify_hashes=args.verify_hashes,
        family=args.family,
    ) as model:
        results = model.segment_many(image, args.query)
    n = len(results)
    stamp = RANDOM_WEIGHTS_STAMP if random_weights(bundle) else None
    lines = [json.dumps(r.to_json()) for r in results] if args.json else []  # before any file
    # all files appear together, or none: each written beside its name, then all renamed
    with atomic_paths([dest for _, _, dest in outputs]) as tmps:
        for tmp, (flag, i, dest) in zip(tmps, outputs, strict=True):
            result = results[i]
            if flag == "--out":
                mask_image(result.mask).save(tmp, format="PNG")
            else:
                pic = Image.fromarray(result.plot(image, stamp=stamp), "RGB")
                pic.save(tmp, format=SAVE_FORMATS[dest.suffix.lower()])
    if args.json:
        print("\n".join(lines))
        return 0
    for q, result in zip(args.query, results, strict=True):
        objects = "; ".join(
            f"box={list(o.box or ())} points={[list(p) for p in o.points]} iou={iou:.2f}"
            for o, iou in zip(result.objects, result.iou_predictions, strict=False)
        )
        head = f"[{q}] " if n > 1 else ""
        print(f"{head}status={result.status.value} area={int(result.mask.sum())} {objects}")
        hit = " (reasoner prefix cached)" if result.reasoner_cache_hit else ""
        print(f"total {result.timings.get('total', 0.0) * 1000:.0f} ms{hit}")
    return 0
