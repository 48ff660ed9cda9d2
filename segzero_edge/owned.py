"""Folders this project wrote, recognised by a marker file, so that only those are replaced.

A folder the project writes as a whole (a bundle, the demo bundle, a ``track`` output) holds
``OWNER_FILE``: a small JSON object whose ``"format"`` is one of the format ids below. A
folder is replaced only when it is empty or its marker names a format the writer may replace;
anything else (a user's folder, even one holding a ``manifest.json`` or a ``track.json``) is
refused with ``FileExistsError``. The marker is read without following symbolic links.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Collection
from pathlib import Path

from ._version import __version__

OWNER_FILE = ".segzero-edge-owner.json"
"""The marker file's name, in the folder it marks."""
BUNDLE_FORMAT = "segzero-edge.bundle/1"
"""A bundle written by ``segzero-edge export``."""
DEMO_BUNDLE_FORMAT = "segzero-edge.demo-bundle/1"
"""The tiny demo bundle (``export --tiny``, random weights)."""
TRACK_OUTPUT_FORMAT = "segzero-edge.track-output/1"
"""The output folder of ``segzero-edge track`` (masks, overlay.gif, track.json)."""
BUNDLE_FORMATS = (BUNDLE_FORMAT, DEMO_BUNDLE_FORMAT)
MAX_OWNER_BYTES = 4096


def owner_format(folder: str | os.PathLike[str]) -> str | None:
    """The format id of ``folder``'s marker, or None when it has none (or it is not a regular
    file of at most ``MAX_OWNER_BYTES`` holding a JSON object with a string ``"format"``)."""
    path = os.path.join(folder, OWNER_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            raw = f.read(MAX_OWNER_BYTES + 1)
        if len(raw) > MAX_OWNER_BYTES:
            return None
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    fmt = data.get("format") if isinstance(data, dict) else None
    return fmt if isinstance(fmt, str) else None


def random_weights(bundle: str | os.PathLike[str]) -> bool:
    """Whether ``bundle`` is the demo bundle, whose models have random weights (its marker is
    :data:`DEMO_BUNDLE_FORMAT`, written by ``export --tiny``): pictures of its results are
    stamped so, as its masks mean nothing."""
    return owner_format(bundle) == DEMO_BUNDLE_FORMAT


RANDOM_WEIGHTS_STAMP = "random weights: masks are meaningless"
"""The stamp on pictures of a demo-bundle result (:func:`random_weights`)."""


def write_owner(folder: str | os.PathLike[str], fmt: str) -> None:
    """Mark ``folder`` (a folder being written, before it is moved into place) as ``fmt``."""
    text = json.dumps({"format": fmt, "written_by": f"segzero-edge {__version__}"})
    Path(folder, OWNER_FILE).write_text(text + "\n")


def check_replaceable(
    folder: str | os.PathLike[str], formats: Collection[str], what: str = "output folder"
) -> None:
    """Raise ``FileExistsError`` unless ``folder`` is absent, an empty folder, or a folder
    marked with one of ``formats`` (not a symbolic link). ``what`` names it in the message."""
    path = Path(folder)
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        raise FileExistsError(f"{path}: the {what} is a symbolic link; give a real folder")
    if not path.is_dir():
        raise FileExistsError(f"{path}: the {what} exists and is not a folder")
    if owner_format(path) in formats or not any(path.iterdir()):
        return
    raise FileExistsError(
        f"{path}: the {what} holds files segzero-edge did not write (no {OWNER_FILE} marker "
        f"of {' / '.join(formats)}); it is never replaced: give a new or empty folder"
    )


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMATS",
    "DEMO_BUNDLE_FORMAT",
    "MAX_OWNER_BYTES",
    "OWNER_FILE",
    "RANDOM_WEIGHTS_STAMP",
    "TRACK_OUTPUT_FORMAT",
    "check_replaceable",
    "owner_format",
    "random_weights",
    "write_owner",
]
