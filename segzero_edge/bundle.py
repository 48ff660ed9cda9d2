"""Read and verify a bundle's manifest, and open its backends.

The file layout is in :mod:`segzero_edge.layout`; the exporter (``segzero_export.bundle``)
writes what this module reads; the manifest's schema is :mod:`segzero_edge.manifest`.

Every name in the manifest's ``files`` table must stay inside the bundle folder: absolute
names, ``..`` and empty or ``.`` components are refused before anything is opened. A bundle
file may be a symbolic link only when its target, resolved, lies inside the bundle folder
(itself resolved first), so a bundle cannot make the runtime read, hash or reveal the size of
a file outside it. The same holds for ``manifest.json`` itself (a link out is refused; it is
read only up to ``manifest.MAX_MANIFEST_BYTES``) and for the files the ONNX graphs keep their
weights in (external data): each must be listed in ``files``, so it passes the same
containment, size and (with ``verify_hashes``) sha256 checks. The manifest's tracking
settings are bounded and must agree with the memory graphs' own metadata and shapes; its
``reasoner.n_ctx`` must hold the family's shortest prompt (:func:`open_backends`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .backend_options import BackendOptions, backend_keywords, check_backend_options
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
from .manifest import FileEntry, Manifest, field_name, read_manifest
from .onnx_scan import OnnxSummary, scan_onnx
from .reasoner.defaults import DEFAULT_N_CTX
from .segmenter.memory import check_tracking

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "FAMILY_KEY",
    "MANIFEST",
    "REQUIRED_FILES",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "Manifest",
    "bundle_family",
    "check_context",
    "file_entry",
    "load_bundle",
    "open_backends",
    "sha256_file",
]


def file_entry(path: Path) -> FileEntry:
    """The manifest entry of one file: its size in bytes and its sha256."""
    return FileEntry(size=path.stat().st_size, sha256=sha256_file(path))


@dataclass
class Bundle:
    """A verified bundle directory (``root``, resolved) and its manifest."""

    root: Path
    manifest: Manifest

    def path(self, name: str) -> Path:
        """``root / name``: a file of the bundle."""
        return self.root / name


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
    """Read and verify ``path``: manifest schema, every file present with its size, the
    ONNX graphs' external data listed, the tracking settings against the memory graphs.

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
    if not mpath.resolve().is_relative_to(root):
        raise BundleError(
            f"{mpath} is a symbolic link to a place outside the bundle folder: not read"
        )
    manifest = read_manifest(mpath)
    files = manifest.files
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{mpath} does not list required file {name}")
    paths = {name: member_path(root, name, mpath) for name in files}
    for name, entry in files.items():
        fpath = paths[name]
        if not fpath.is_file():
            raise BundleError(f"bundle file missing: {fpath}")
        size = fpath.stat().st_size
        if size != entry.size:
            raise BundleError(
                f"bundle file {fpath} has {size} bytes, manifest says {entry.size}: "
                "truncated or replaced; re-export the bundle"
            )
        if verify_hashes and sha256_file(fpath) != entry.sha256:
            raise BundleError(f"bundle file {fpath} is corrupt: sha256 differs from the manifest")
    graphs = {name: _scan_graph(paths[name]) for name in files if name.endswith(".onnx")}
    for name, summary in graphs.items():
        _check_external_data(paths[name], summary, files, mpath)
    check_tracking(manifest, graphs, mpath)
    return Bundle(root=root, manifest=manifest)


def _scan_graph(path: Path) -> OnnxSummary:
    try:
        return scan_onnx(path)
    except (OSError, ValueError) as e:
        raise BundleError(f"bundle file {path} is not a readable ONNX model: {e}") from None


def _check_external_data(
    path: Path, summary: OnnxSummary, files: Mapping[str, FileEntry], manifest: Path
) -> None:
    """Every external data file of the graph at ``path`` is listed in the manifest (so it
    passed :func:`member_path` and the size and hash checks) and holds the bytes the graph
    reads from it. ``BundleError`` otherwise."""
    for ref in summary.external:
        if ref.location is None:
            raise BundleError(f"{path}: tensor {ref.tensor!r} has external data but no location")
        if ref.location not in files:
            raise BundleError(
                f"{path}: tensor {ref.tensor!r} keeps its data in {ref.location!r}, which "
                f"{manifest} does not list; every file a bundle's graphs read must be listed "
                "(name, size, sha256): re-export the bundle"
            )
        end = (ref.offset or 0) + (ref.length or 0)
        if end > files[ref.location].size:
            raise BundleError(
                f"{path}: tensor {ref.tensor!r} reads bytes up to {end} of {ref.location}, "
                f"which has {files[ref.location].size} ({manifest})"
            )


def bundle_family(bundle: Bundle, family: str | None = None) -> ModelFamily:
    """The bundle's model family: ``family`` when given (an override), else the manifest's.

    Raises ``BundleError`` when the manifest names none (a bundle exported before families were
    recorded) or an unknown one, saying how to re-export or override; ``ValueError`` for an
    unknown ``family``.
    """
    if family is not None:
        return get_family(family)
    mpath = bundle.root / MANIFEST
    name = bundle.manifest.family
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


@backend_keywords
def open_backends(
    path: str | os.PathLike[str],
    **options: Unpack[BackendOptions],
) -> tuple[Reasoner, Segmenter, ModelFamily]:
    """Verify the bundle, resolve its model family (:func:`bundle_family`) and open its
    reasoner (llama.cpp, with the family's answer grammar for ``max_objects`` objects, image
    tokens and decode budget) and segmenter backends.

    Args:
        path: The bundle folder (holds ``manifest.json``).
        **options: The keywords :meth:`segzero_edge.pipeline.SegZeroEdge.from_bundle` passes on
            (:class:`~segzero_edge.backend_options.BackendOptions`), checked as it checks them:

    Returns:
        The reasoner, the segmenter and the model family.

    Raises:
        TypeError: An unknown keyword.
        BundleError, BackendError, ValueError: As ``from_bundle``.
    """
    check_backend_options(options)
    bundle = load_bundle(path, verify_hashes=options["verify_hashes"])
    fam = bundle_family(bundle, options["family"])
    import llama_cpp

    from .placement import split_threads
    from .reasoner.llama_cpp import LlamaCppReasoner
    from .segmenter.auto import open_segmenter

    n_ctx = options["n_ctx"]
    n_ctx_source = "n_ctx" if n_ctx is not None else None
    if n_ctx_source is None and bundle.manifest.reasoner.n_ctx is not None:
        n_ctx_source = f"{bundle.root / MANIFEST}: reasoner.n_ctx"
    if n_ctx is None:
        n_ctx = bundle.manifest.reasoner.n_ctx or DEFAULT_N_CTX
    n_gpu_layers, n_threads = options["n_gpu_layers"], options["n_threads"]
    reasoner_on_cpu = n_gpu_layers == 0 or not llama_cpp.llama_supports_gpu_offload()
    sam_threads: int | None = None
    reasoner_threads = n_threads
    if options["overlap"] and reasoner_on_cpu:
        total = int(n_threads or os.cpu_count() or 1)
        split_reasoner, sam_threads = split_threads(total)
    seg_opts = {} if sam_threads is None else {"threads": sam_threads}
    segmenter = open_segmenter(bundle.root, backend=options["segmenter_backend"], **seg_opts)
    if sam_threads is not None and segmenter.device_kind == "cpu":
        reasoner_threads = split_reasoner
    max_new_tokens = options["max_new_tokens"]
    reasoner = None
    try:
        reasoner = LlamaCppReasoner(
            bundle.path(REASONER_FILE),
            bundle.path(MMPROJ_FILE),
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=reasoner_threads,
            n_batch=options["n_batch"],
            kv_cache_type=options["kv_cache_type"],
            max_new_tokens=fam.max_new_tokens if max_new_tokens is None else max_new_tokens,
            think_budget=options["think_budget"],
            grammar=options["grammar"],
            answer_grammar=options["answer_grammar"] or fam.answer_grammar(options["max_objects"]),
            image_tokens=fam.image_tokens,
            extra_bufts=options["extra_bufts"],
            use_mmap=options["use_mmap"],
            prefix_cache_mb=options["prefix_cache_mb"],
            warmup=options["warmup"],
            verbose=options["verbose"],
        )
        check_context(reasoner, fam, n_ctx_source or "the default n_ctx")
    except BaseException:
        if reasoner is not None:
            reasoner.close()
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


class PromptCounter(Protocol):
    """A reasoner that counts the KV cells of a prompt (``LlamaCppReasoner``)."""

    n_ctx: int

    def prompt_tokens(self, prompt: str) -> list[int]: ...


def check_context(reasoner: PromptCounter, family: ModelFamily, source: str) -> None:
    """The reasoner's context (``n_ctx`` KV cells) holds ``family``'s shortest prompt (one
    image and a one-character query, in the family's template) and one generated token.

    Raises :class:`BundleError` naming ``source`` (the manifest's ``reasoner.n_ctx``) or, when
    ``source`` is the ``n_ctx`` option, ``ValueError``: otherwise every query would fail later.
    """
    shortest = len(reasoner.prompt_tokens(family.build_prompt("x")))
    if shortest < reasoner.n_ctx:
        return
    error = ValueError if source == "n_ctx" else BundleError
    raise error(
        f"{source} is {reasoner.n_ctx} KV cells, but the shortest {family.name} prompt (the "
        f"image and a one-character query) takes {shortest} and generation needs at least "
        f"one more: use an n_ctx above {shortest} (re-export with --n-ctx, or pass n_ctx=)"
    )
