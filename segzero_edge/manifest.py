"""The bundle manifest (``manifest.json``): its type, its schema, its one reader and writer.

:class:`Manifest` is the typed manifest. :func:`read_manifest` is the one reader of
``manifest.json`` (the bundle reader, the SAM2 memory settings and the TensorRT engine cache
all use it): it checks the file against ``MANIFEST_SCHEMA`` before building the type, and every
problem is a :class:`~segzero_edge.errors.BundleError` naming the file and the field
(``reasoner.n_ctx``, ``files["reasoner.gguf"].size``). The exporter builds a :class:`Manifest`
and writes it with :meth:`Manifest.dumps`, which checks it against the same schema.

``MANIFEST_SCHEMA`` is a JSON Schema (draft 2020-12, https://json-schema.org/draft/2020-12)
using only the keywords in ``KEYWORDS``. Keys the schema does not name are allowed (a newer
exporter's additions) and not kept in the type.

The runtime must not depend on ``jsonschema`` (and its compiled ``rpds-py``) for one small
schema, so :func:`validate` implements the few keywords used here; the tests check it against
``jsonschema`` itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BundleError
from .layout import FAMILY_KEY, MAX_N_CTX, SCHEMA_VERSION, TRACKING_KEY

MAX_MANIFEST_BYTES = 1 << 20
"""A manifest is a few KiB; a larger file is not one (and is not read into memory)."""
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a manifest may have."""

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_TEXT = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 1}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "segzero-edge bundle manifest.json",
    "type": "object",
    "required": ["schema_version", "files", "reasoner", "segmenter"],
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
        "created_by": _TEXT,
        "created_at": _TEXT,
        "target": _TEXT,
        FAMILY_KEY: _TEXT,  # layout.FAMILY_KEY: the model family (segzero_edge.families)
        "prompt_template": _TEXT,  # schema 1 (before families)
        "reasoner": {
            "type": "object",
            "properties": {
                "source": _TEXT,
                "revision": _TEXT,
                "architecture": _TEXT,
                "quantization": _TEXT,
                "mmproj_type": _TEXT,
                "input_size": _COUNT,
                "image_tokens": _COUNT,
                "n_ctx": {"type": "integer", "minimum": 1, "maximum": MAX_N_CTX},
            },
        },
        "segmenter": {
            "type": "object",
            "properties": {
                "source": _TEXT,
                "checkpoint_sha256": _SHA256,
                "variant": _TEXT,
                "image_size": _COUNT,
                TRACKING_KEY: {"type": "object"},  # SAM2 memory settings (segmenter/memory.py)
            },
        },
        "memory_gb": {"type": "object"},
        "files": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"type": "string", "minLength": 1},
            "additionalProperties": {
                "type": "object",
                "required": ["size", "sha256"],
                "properties": {"size": {"type": "integer", "minimum": 0}, "sha256": _SHA256},
            },
        },
    },
}

KEYWORDS = frozenset(
    {
        "$schema",
        "title",
        "type",
        "required",
        "properties",
        "additionalProperties",
        "propertyNames",
        "minProperties",
        "minimum",
        "maximum",
        "minLength",
        "pattern",
    }
)
"""The JSON Schema keywords :func:`validate` implements (all that ``MANIFEST_SCHEMA`` uses)."""

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def field_name(path: tuple[str, ...]) -> str:
    """``("files", "reasoner.gguf", "size")`` -> ``files["reasoner.gguf"].size``."""
    out = ""
    for key in path:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(key)}]"
    return out or "(top level)"


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def errors(instance: Any, schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[str]:
    """Each way ``instance`` breaks ``schema``, as ``"<field>: <problem>"`` (JSON Schema
    semantics for the keywords in :data:`KEYWORDS`)."""
    where = field_name(path)
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](instance):
        article = "an" if kind[0] in "aeiou" else "a"
        yield f"{where}: expected {article} {kind}, got {_show(instance)}"
        return
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            yield f"{where}: {_show(instance)} is below the minimum {schema['minimum']}"
        if "maximum" in schema and instance > schema["maximum"]:
            yield f"{where}: {_show(instance)} is above the maximum {schema['maximum']}"
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            yield f"{where}: {_show(instance)} is shorter than {schema['minLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            yield f"{where}: {_show(instance)} does not match {schema['pattern']}"
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                yield f"{field_name((*path, key))}: missing"
        if len(instance) < schema.get("minProperties", 0):
            yield f"{where}: needs at least {schema['minProperties']} entries"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if "propertyNames" in schema:
                for problem in errors(key, schema["propertyNames"]):
                    yield f"{field_name((*path, key))}: name {problem.split(': ', 1)[1]}"
            if key in props:
                yield from errors(value, props[key], (*path, key))
            elif extra is False:
                yield f"{field_name((*path, key))}: not allowed"
            elif isinstance(extra, dict):
                yield from errors(value, extra, (*path, key))


def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    """All problems of ``instance`` against ``schema`` (empty when valid)."""
    return list(errors(instance, schema))


def _finite_and_shallow(doc: Any) -> str | None:
    """The first non-finite number (``Infinity``, ``NaN``, ``1e400``) or too-deep nesting, as
    ``"<field>: <problem>"``; walked without recursion."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return f"{field_name(path[:MAX_DEPTH])}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{field_name(path)}: {json.dumps(value)} is not a JSON number (RFC 8259)"
        if isinstance(value, dict):
            stack.extend((v, (*path, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, str(i))) for i, v in enumerate(value))
    return None


@dataclass(frozen=True)
class FileEntry:
    """One ``files`` entry: the file's size in bytes and its sha256 (64 lowercase hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ReasonerManifest:
    """``reasoner``: where the GGUFs came from and how they were made. ``input_size`` is the
    side of the square image the reasoner sees (the family's ``resize_size``, pixels),
    ``image_tokens`` the tokens of one image, ``n_ctx`` the llama.cpp context (KV cells) the
    bundle was sized for; ``None`` where not recorded."""

    source: str | None = None
    revision: str | None = None
    architecture: str | None = None
    quantization: str | None = None
    mmproj_type: str | None = None
    input_size: int | None = None
    image_tokens: int | None = None
    n_ctx: int | None = None


@dataclass(frozen=True)
class SegmenterManifest:
    """``segmenter``: the SAM2 checkpoint and variant, the input side (pixels) and the SAM2
    memory settings (``tracking``, read by :func:`segzero_edge.segmenter.memory.tracking_of`;
    ``None`` in bundles without tracking)."""

    source: str | None = None
    checkpoint_sha256: str | None = None
    variant: str | None = None
    image_size: int | None = None
    tracking: Mapping[str, Any] | None = None


_REASONER_FIELDS = tuple(ReasonerManifest.__dataclass_fields__)
_SEGMENTER_FIELDS = ("source", "checkpoint_sha256", "variant", "image_size")


@dataclass(frozen=True)
class Manifest:
    """A bundle's ``manifest.json`` (schema :data:`~segzero_edge.layout.SCHEMA_VERSION`).

    ``files`` maps each file name (relative to the bundle folder) to its :class:`FileEntry`;
    ``family`` names the model family (:mod:`segzero_edge.families`; ``None`` in bundles from
    before families); ``memory_gb`` is the exporter's memory estimate (GB, per part, with the
    target's ``budget`` and whether it ``fits``). Build one from a parsed document with
    :meth:`from_json` (validated), read one with :func:`read_manifest`.
    """

    schema_version: int
    files: Mapping[str, FileEntry]
    reasoner: ReasonerManifest = field(default_factory=ReasonerManifest)
    segmenter: SegmenterManifest = field(default_factory=SegmenterManifest)
    family: str | None = None
    target: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    prompt_template: str | None = None
    memory_gb: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, doc: Any, where: str = "manifest") -> Manifest:
        """The manifest of a parsed ``manifest.json`` document, checked against
        :data:`MANIFEST_SCHEMA` first. Raises :class:`BundleError` ``"<where>: <field>: <problem>"``
        naming the first problem (and how many more there are)."""
        found = validate(doc, MANIFEST_SCHEMA)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise BundleError(f"{where}: {found[0]}{more}")
        reasoner = doc.get("reasoner", {})
        segmenter = doc.get("segmenter", {})
        return cls(
            schema_version=doc["schema_version"],
            files={
                name: FileEntry(size=e["size"], sha256=e["sha256"])
                for name, e in doc["files"].items()
            },
            reasoner=ReasonerManifest(**{k: reasoner.get(k) for k in _REASONER_FIELDS}),
            segmenter=SegmenterManifest(
                **{k: segmenter.get(k) for k in _SEGMENTER_FIELDS},
                tracking=segmenter.get(TRACKING_KEY),
            ),
            family=doc.get(FAMILY_KEY),
            target=doc.get("target"),
            created_by=doc.get("created_by"),
            created_at=doc.get("created_at"),
            prompt_template=doc.get("prompt_template"),
            memory_gb=doc.get("memory_gb"),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``manifest.json`` document (fields that are ``None`` left out), in the order the
        exporter writes it."""
        reasoner = {k: getattr(self.reasoner, k) for k in _REASONER_FIELDS}
        segmenter: dict[str, Any] = {k: getattr(self.segmenter, k) for k in _SEGMENTER_FIELDS}
        segmenter[TRACKING_KEY] = (
            None if self.segmenter.tracking is None else dict(self.segmenter.tracking)
        )
        doc: dict[str, Any] = {
            "schema_version": self.schema_version,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "target": self.target,
            FAMILY_KEY: self.family,
            "prompt_template": self.prompt_template,
            "reasoner": {k: v for k, v in reasoner.items() if v is not None},
            "segmenter": {k: v for k, v in segmenter.items() if v is not None},
            "memory_gb": None if self.memory_gb is None else dict(self.memory_gb),
            "files": {name: {"size": e.size, "sha256": e.sha256} for name, e in self.files.items()},
        }
        return {k: v for k, v in doc.items() if v is not None}

    def dumps(self) -> str:
        """The ``manifest.json`` text (indented, strict JSON: no NaN or Infinity). Raises
        ``ValueError`` naming the field when the manifest breaks :data:`MANIFEST_SCHEMA` (what
        the reader will check)."""
        doc = self.to_json()
        found = validate(doc, MANIFEST_SCHEMA)
        if found:
            raise ValueError(f"invalid manifest: {found[0]}")
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def read_manifest(path: Path) -> Manifest:
    """Read ``manifest.json`` at ``path``: the one reader of a bundle's manifest.

    Raises :class:`BundleError` naming ``path`` (and the field) when the file cannot be read,
    is not JSON, holds a non-finite number or deep nesting, has a ``schema_version`` newer
    than this runtime reads, or breaks :data:`MANIFEST_SCHEMA`.
    """
    from ._version import __version__

    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} has {size} bytes, more than a manifest can have")
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{path} is not a manifest: nested too deeply to read") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from None
    problem = _finite_and_shallow(doc)
    if problem:
        raise BundleError(f"{path}: {problem}")
    if not isinstance(doc, dict):
        raise BundleError(f"{path} must hold a JSON object")
    version = doc.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema_version {version}, newer than this runtime reads "
            f"({SCHEMA_VERSION}); upgrade segzero-edge (this is {__version__})"
        )
    return Manifest.from_json(doc, str(path))


__all__ = [
    "KEYWORDS",
    "MANIFEST_SCHEMA",
    "MAX_DEPTH",
    "MAX_MANIFEST_BYTES",
    "FileEntry",
    "Manifest",
    "ReasonerManifest",
    "SegmenterManifest",
    "errors",
    "field_name",
    "read_manifest",
    "validate",
]
