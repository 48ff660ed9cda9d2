"""Read and verify a bundle's manifest, and open its backends.

The file layout is in :mod:`segzero_edge.layout`; the exporter (``segzero_export.bundle``)
writes what this module reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .backends import Reasoner, Segmenter
from .errors import BundleError
from .fileio import sha256_file
from .layout import MANIFEST, MMPROJ_FILE, REASONER_FILE, REQUIRED_FILES, SCHEMA_VERSION

__all__ = [
    "MANIFEST",
    "REQUIRED_FILES",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "file_entry",
    "load_bundle",
    "open_backends",
    "sha256_file",
]


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of one file: size and sha256."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


@dataclass
class Bundle:
    """A verified bundle directory and its manifest."""

    root: Path
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def reasoner(self) -> dict[str, Any]:
        return dict(self.manifest.get("reasoner", {}))

    @property
    def segmenter(self) -> dict[str, Any]:
        return dict(self.manifest.get("segmenter", {}))


def load_bundle(path: str | os.PathLike[str], *, verify_hashes: bool = False) -> Bundle:
    """Read and verify ``path``: manifest schema, every file present with its size.

    With ``verify_hashes`` the sha256 of every file is checked too. Errors name the file.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{mpath} is missing: not a segzero-edge bundle")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath} must hold a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{mpath} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{mpath} has schema_version {version}, newer than this runtime reads "
            f"({SCHEMA_VERSION}); upgrade segzero-edge (this is {__version__})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{mpath} has no 'files' table")
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{mpath} does not list required file {name}")
    for name, entry in files.items():
        fpath = root / name
        if not fpath.is_file():
            raise BundleError(f"bundle file missing: {fpath}")
        size = fpath.stat().st_size
        if size != entry.get("size"):
            raise BundleError(
                f"bundle file {fpath} has {size} bytes, manifest says {entry.get('size')}: "
                "truncated or replaced; re-export the bundle"
            )
        if verify_hashes and sha256_file(fpath) != entry.get("sha256"):
            raise BundleError(f"bundle file {fpath} is corrupt: sha256 differs from the manifest")
    return Bundle(root=root, manifest=manifest)


def open_backends(
    path: str | os.PathLike[str],
    *,
    reasoner_backend: str = "auto",
    segmenter_backend: str = "auto",
    verify_hashes: bool = False,
    **reasoner_options: Any,
) -> tuple[Reasoner, Segmenter]:
    """Verify the bundle and open its reasoner (llama.cpp) and segmenter backends."""
    bundle = load_bundle(path, verify_hashes=verify_hashes)
    if reasoner_backend not in ("auto", "llama.cpp"):
        raise ValueError(
            f"unknown reasoner backend {reasoner_backend!r}; use 'auto' or 'llama.cpp'"
        )
    from .reasoner.llama_cpp import LlamaCppReasoner
    from .segmenter.auto import open_segmenter

    reasoner_options.setdefault("n_ctx", int(bundle.reasoner.get("n_ctx", 4096)))
    segmenter = open_segmenter(bundle.root, backend=segmenter_backend)
    try:
        reasoner = LlamaCppReasoner(
            bundle.path(REASONER_FILE), bundle.path(MMPROJ_FILE), **reasoner_options
        )
    except BaseException:
        segmenter.close()
        raise
    return reasoner, segmenter
