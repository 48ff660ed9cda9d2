"""Read and verify a bundle's manifest, and open its backends.

The file layout is in :mod:`segzero_edge.layout`; the exporter (``segzero_export.bundle``)
writes what this module reads; the manifest's schema is :mod:`segzero_edge.manifest`.

Every name in the manifest's ``files`` table must stay inside the bundle folder: absolute
names, ``..`` and empty or ``.`` components are refused before anything is opened. A bundle
file may be a symbolic link only when its target, resolved, lies inside the bundle folder
(itself resolved first), so a bundle cannot make the runtime read, hash or reveal the size of
a file outside it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import Reasoner, Segmenter
from .errors import BundleError
from .families import FAMILIES, ModelFamily, get_family
from .fileio import sha256_file
from .layout import (
    FAMILY_KEY,
    MANIFEST,
    MMPROJ_FILE,
    REASONER_FILE,
    REQUIRED_FILES,
    SCHEMA_VERSION,
)
from .manifest import field_name, parse_manifest
from .reasoner.grammar import DEFAULT_MAX_OBJECTS

__all__ = [
    "FAMILY_KEY",
    "MANIFEST",
    "REQUIRED_FILES",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "bundle_family",
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


def member_path(root: Path, name: str, manifest: Path) -> Path:
    """``root / name`` for a ``files`` entry, refusing names and links that leave ``root``.

    ``root`` must be resolved (``Path.resolve()``). Raises :class:`BundleError` naming
    ``manifest`` and the entry for an absolute name, a ``..``, ``.`` or empty component, a
    backslash or NUL, text that is not UTF-8, or a symbolic link whose target is outside.
    """
    where = f"{manifest}: {field_name(('files', name))}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"{where}: the name is not valid text") from None
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name or "\0" in name:
        raise BundleError(f"{where}: not a relative name inside the bundle folder")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"{where}: the name leaves the bundle folder (or has empty parts)")
    path = root / name
    if not path.resolve().is_relative_to(root):
        raise BundleError(f"{where}: a symbolic link to a place outside the bundle folder")
    return path


def load_bundle(path: str | os.PathLike[str], *, verify_hashes: bool = False) -> Bundle:
    """Read and verify ``path``: manifest schema, every file present with its size.

    With ``verify_hashes`` the sha256 of every file is checked too. Raises
    :class:`BundleError` naming the file (and for the manifest, the field).
    """
    given = Path(path)
    if not given.is_dir():
        raise BundleError(f"bundle folder not found: {given}")
    root = given.resolve()
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{given / MANIFEST} is missing: not a segzero-edge bundle")
    manifest = parse_manifest(mpath)
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{mpath} does not list required file {name}")
    paths = {name: member_path(root, name, mpath) for name in files}
    for name, entry in files.items():
        fpath = paths[name]
        if not fpath.is_file():
            raise BundleError(f"bundle file missing: {fpath}")
        size = fpath.stat().st_size
        if size != entry["size"]:
            raise BundleError(
                f"bundle file {fpath} has {size} bytes, manifest says {entry['size']}: "
                "truncated or replaced; re-export the bundle"
            )
        if verify_hashes and sha256_file(fpath) != entry["sha256"]:
            raise BundleError(f"bundle file {fpath} is corrupt: sha256 differs from the manifest")
    return Bundle(root=root, manifest=manifest)


def bundle_family(bundle: Bundle, family: str | None = None) -> ModelFamily:
    """The bundle's model family: ``family`` when given (an override), else the manifest's.

    Raises ``BundleError`` when the manifest names none (a bundle exported before families were
    recorded) or an unknown one, saying how to re-export or override; ``ValueError`` for an
    unknown ``family``.
    """
    if family is not None:
        return get_family(family)
    mpath = bundle.root / MANIFEST
    name = bundle.manifest.get(FAMILY_KEY)
    known = ", ".join(FAMILIES)
    if name is None:
        raise BundleError(
            f"{mpath} does not name the model family (prompt, answer grammar and SAM2 prompt "
            "the reasoner was trained with). Re-export the bundle with this version "
            "(segzero-edge export ... --family NAME), or name it: "
            f"SegZeroEdge.from_bundle(path, family=NAME) / segment --family NAME ({known})"
        )
    if name not in FAMILIES:
        raise BundleError(
            f"{mpath} names model family {name!r}, which this runtime does not know "
            f"({known}); upgrade segzero-edge or override with family=NAME"
        )
    return FAMILIES[name]


def open_backends(
    path: str | os.PathLike[str],
    *,
    family: str | None = None,
    reasoner_backend: str = "auto",
    segmenter_backend: str = "auto",
    verify_hashes: bool = False,
    overlap: bool | None = None,
    **reasoner_options: Any,
) -> tuple[Reasoner, Segmenter, ModelFamily]:
    """Verify the bundle, resolve its model family (:func:`bundle_family`) and open its
    reasoner (llama.cpp, with the family's answer grammar and decode budget unless given) and
    segmenter backends.

    With ``overlap=True`` and both backends on the CPU, the CPU threads (``n_threads``, default
    all cores) are split between them (:func:`segzero_edge.placement.split_threads`).
    """
    bundle = load_bundle(path, verify_hashes=verify_hashes)
    fam = bundle_family(bundle, family)
    if reasoner_backend not in ("auto", "llama.cpp"):
        raise ValueError(
            f"unknown reasoner backend {reasoner_backend!r}; use 'auto' or 'llama.cpp'"
        )
    import llama_cpp

    from .placement import split_threads
    from .reasoner.llama_cpp import LlamaCppReasoner
    from .segmenter.auto import open_segmenter

    reasoner_options.setdefault("n_ctx", bundle.reasoner.get("n_ctx", 4096))
    reasoner_options.setdefault("max_new_tokens", fam.max_new_tokens)
    reasoner_options.setdefault("image_tokens", fam.image_tokens)
    if "answer_grammar" not in reasoner_options:
        max_objects = reasoner_options.get("max_objects", DEFAULT_MAX_OBJECTS)
        reasoner_options["answer_grammar"] = fam.answer_grammar(max_objects)
    n_gpu_layers = int(reasoner_options.get("n_gpu_layers", -1))
    reasoner_on_cpu = n_gpu_layers == 0 or not llama_cpp.llama_supports_gpu_offload()
    seg_opts: dict[str, Any] = {}
    if overlap and reasoner_on_cpu:
        total = int(reasoner_options.get("n_threads") or os.cpu_count() or 1)
        reasoner_threads, seg_opts["threads"] = split_threads(total)
    segmenter = open_segmenter(bundle.root, backend=segmenter_backend, **seg_opts)
    if seg_opts and getattr(segmenter, "device_kind", "cpu") == "cpu":
        reasoner_options["n_threads"] = reasoner_threads
    try:
        reasoner = LlamaCppReasoner(
            bundle.path(REASONER_FILE), bundle.path(MMPROJ_FILE), **reasoner_options
        )
    except BaseException:
        segmenter.close()
        raise
    if reasoner.patch_merge != fam.patch_merge:  # e.g. a Qwen2.5-VL family on a Qwen3-VL GGUF
        reasoner.close()
        segmenter.close()
        raise ValueError(
            f"model family {fam.name!r} is for {fam.architecture} ({fam.patch_merge} px image "
            f"tokens) but the bundle's reasoner is a {reasoner.arch!r} GGUF "
            f"({reasoner.patch_merge} px): pick a family for that backbone (--family)"
        )
    return reasoner, segmenter, fam
