"""Hostile bundles (issue 14): the manifest against its schema, and paths out of the bundle.

Every malformed manifest is a ``BundleError`` naming manifest.json and the field; no name in
the files table reaches outside the bundle folder (symbolic links included).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_edge.bundle import BundleError, load_bundle
from segzero_edge.manifest import KEYWORDS, MANIFEST_SCHEMA, validate

Edit = Callable[[dict[str, Any]], Any]


def _write_manifest(bundle: Path, text: str) -> None:
    path = bundle / "manifest.json"
    path.unlink()  # a hard link to the session bundle: replace, never edit in place
    path.write_text(text)


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def _set(path: tuple[str, ...], value: Any) -> Edit:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return m

    return edit


CASES: list[tuple[str, Edit, str]] = [
    ("reasoner null", _set(("reasoner",), None), r"reasoner: expected an object, got null"),
    ("segmenter list", _set(("segmenter",), [1]), r"segmenter: expected an object, got list"),
    (
        'files entry "abc"',
        _set(("files", "reasoner.gguf"), "abc"),
        r'files\["reasoner\.gguf"\]: expected an object, got "abc"',
    ),
    (
        "size as text",
        _set(("files", "mmproj.gguf", "size"), "12"),
        r'files\["mmproj\.gguf"\]\.size: expected an integer, got "12"',
    ),
    (
        "sha256 not hex",
        _set(("files", "mmproj.gguf", "sha256"), "xyz"),
        r'files\["mmproj\.gguf"\]\.sha256: "xyz" does not match',
    ),
    ("n_ctx abc", _set(("reasoner", "n_ctx"), "abc"), r"reasoner\.n_ctx: expected an integer"),
    ("n_ctx 2^32+64", _set(("reasoner", "n_ctx"), 4294967360), r"4294967360 is above the max"),
    ("n_ctx 0", _set(("reasoner", "n_ctx"), 0), r"reasoner\.n_ctx: 0 is below the minimum 1"),
    ("n_ctx 1.5", _set(("reasoner", "n_ctx"), 1.5), r"reasoner\.n_ctx: expected an integer"),
    ("schema_version true", _set(("schema_version",), True), r"schema_version: expected an int"),
    ("schema_version 0", _set(("schema_version",), 0), r"schema_version: 0 is below"),
    ("schema_version -3", _set(("schema_version",), -3), r"schema_version: -3 is below"),
    ("schema_version '1'", _set(("schema_version",), "1"), r"schema_version: expected an int"),
    ("schema_version 99", _set(("schema_version",), 99), r"schema_version 99, newer"),
    ("no files", lambda m: {k: v for k, v in m.items() if k != "files"}, r"files: missing"),
    ("files empty", _set(("files",), {}), r"files: needs at least 1 entries"),
    ("files null", _set(("files",), None), r"files: expected an object, got null"),
    ("not an object", lambda m: [m], r"must hold a JSON object"),
]


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_manifest_names_the_field(bundle_copy: Path, edit: Edit, message: str) -> None:
    _write_manifest(bundle_copy, json.dumps(edit(_manifest(bundle_copy))))
    with pytest.raises(BundleError, match=rf"manifest\.json.*{message}"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"reasoner": {"n_ctx": Infinity}', r"reasoner\.n_ctx: Infinity is not a JSON number"),
        ('"reasoner": {"n_ctx": NaN}', r"reasoner\.n_ctx: NaN is not a JSON number"),
        ('"reasoner": {"n_ctx": 1e400}', r"reasoner\.n_ctx: Infinity is not a JSON number"),
        ('"x": ' + "[" * 100_000 + "]" * 100_000, r"nested too deeply"),
        ('"x": ' + '{"a": ' * 40 + "1" + "}" * 40, r"nested deeper than 32 levels"),
        ('"reasoner": {"n_ctx": 1' + "0" * 5000 + "}", r"not valid JSON: Exceeds the limit"),
    ],
    ids=["Infinity", "NaN", "1e400", "100000-deep", "40-deep", "5000-digit int"],
)
def test_unreadable_manifest_text(bundle_copy: Path, text: str, message: str) -> None:
    _write_manifest(bundle_copy, '{"schema_version": 1, ' + text + "}")
    with pytest.raises(BundleError, match=rf"manifest\.json.*{message}"):
        load_bundle(bundle_copy)


def test_oversized_manifest(bundle_copy: Path) -> None:
    _write_manifest(bundle_copy, json.dumps({"schema_version": 1, "pad": "x" * (1 << 20)}))
    with pytest.raises(BundleError, match=r"manifest\.json has \d+ bytes, more than"):
        load_bundle(bundle_copy)


# --- paths out of the bundle ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../secret", "the name leaves the bundle folder"),
        ("/etc/hostname", "not a relative name"),
        ("sub/../../x", "the name leaves the bundle folder"),
        ("./reasoner.gguf", "the name leaves the bundle folder"),
        ("a//b", "the name leaves the bundle folder"),
        ("C:evil", "not a relative name"),
        ("..\\secret", "not a relative name"),
    ],
)
def test_names_that_leave_the_bundle_are_refused(
    bundle_copy: Path, tmp_path: Path, name: str, message: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    m = _manifest(bundle_copy)
    m["files"][name] = {"size": 9, "sha256": "0" * 64}
    _write_manifest(bundle_copy, json.dumps(m))
    with pytest.raises(BundleError, match=rf"manifest\.json: files\[.*\]: {message}") as err:
        load_bundle(bundle_copy)
    assert "9 bytes" not in str(err.value)


def test_symlink_out_of_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.gguf"
    os.link(bundle_copy / "reasoner.gguf", outside)  # same bytes: only the place is wrong
    (bundle_copy / "reasoner.gguf").unlink()
    (bundle_copy / "reasoner.gguf").symlink_to(outside)
    with pytest.raises(BundleError, match=r"reasoner\.gguf.*link to a place outside the bundle"):
        load_bundle(bundle_copy, verify_hashes=True)


def test_symlink_inside_the_bundle_is_followed(bundle_copy: Path) -> None:
    store = bundle_copy / "store"
    store.mkdir()
    os.replace(bundle_copy / "mmproj.gguf", store / "mmproj.gguf")
    (bundle_copy / "mmproj.gguf").symlink_to(Path("store") / "mmproj.gguf")
    load_bundle(bundle_copy, verify_hashes=True)
    # and a bundle reached through a symbolic link is the same bundle
    link = bundle_copy.parent / "bundle-link"
    link.symlink_to(bundle_copy)
    assert load_bundle(link, verify_hashes=True).manifest.to_json() == _manifest(bundle_copy)


# --- the schema and its validator ------------------------------------------------------------


def _keywords(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            found |= _keywords(sub)
    for key in ("additionalProperties", "propertyNames"):
        found |= _keywords(schema.get(key))
    return found


def test_the_validator_knows_every_keyword_the_schema_uses() -> None:
    assert _keywords(MANIFEST_SCHEMA) <= KEYWORDS


def test_exported_manifest_is_valid(tiny_bundle: Path) -> None:
    assert validate(_manifest(tiny_bundle), MANIFEST_SCHEMA) == []


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = [
    ("schema_version",),
    ("reasoner",),
    ("reasoner", "n_ctx"),
    ("segmenter",),
    ("files",),
    ("files", "reasoner.gguf"),
    ("files", "reasoner.gguf", "size"),
    ("files", "mmproj.gguf", "sha256"),
    ("memory_gb",),
    ("created_by",),
]


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The exported manifest with 1-3 fields replaced by random JSON or deleted, or an extra
    random file entry (names with ``..``, ``/``, NUL, surrogates...)."""
    m = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FIELDS))
        node = m
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if draw(st.booleans()):
            node[path[-1]] = draw(JSON)
        else:
            node.pop(path[-1], None)
    if draw(st.booleans()) and isinstance(m.get("files"), dict):
        name = draw(st.text(st.sampled_from("./\\\x00\ud800a:"), min_size=1, max_size=8))
        m["files"][name] = {"size": draw(st.integers(0, 10)), "sha256": "0" * 64}
    return m


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_manifests_give_a_bundle_or_a_bundle_error(
    bundle_copy: Path, data: st.DataObject
) -> None:
    base = _manifest(bundle_copy)
    m = data.draw(mutated(base))
    _write_manifest(bundle_copy, json.dumps(m))  # NaN / Infinity are written as such
    try:
        bundle = load_bundle(bundle_copy)
    except BundleError as e:
        assert "manifest.json" in str(e) or "bundle file" in str(e), e
    else:
        assert validate(bundle.manifest.to_json(), MANIFEST_SCHEMA) == []
        assert all(
            not n.startswith("/") and ".." not in n.split("/") for n in bundle.manifest.files
        )
    finally:
        _write_manifest(bundle_copy, json.dumps(base))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_validator_agrees_with_jsonschema(data: st.DataObject) -> None:
    """The runtime's small validator against the reference implementation of JSON Schema."""
    jsonschema = pytest.importorskip("jsonschema")
    base = {
        "schema_version": 1,
        "reasoner": {"n_ctx": 4096},
        "segmenter": {},
        "files": {"reasoner.gguf": {"size": 1, "sha256": "0" * 64}},
    }
    m = data.draw(mutated(base))
    if "NaN" in json.dumps(m) or "Infinity" in json.dumps(m):
        return  # not JSON: refused before the schema is consulted
    ours = validate(m, MANIFEST_SCHEMA) == []
    # One stated difference: JSON Schema's "integer" admits 1.0; the runtime's validator wants
    # a JSON integer (export writes only those), so the reference gets that type rule too.
    base_cls = jsonschema.Draft202012Validator
    strict_int = base_cls.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)
    )
    reference = jsonschema.validators.extend(base_cls, type_checker=strict_int)
    theirs = reference(MANIFEST_SCHEMA).is_valid(m)
    assert ours == theirs, (m, validate(m, MANIFEST_SCHEMA))
