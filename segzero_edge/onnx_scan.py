"""What an ONNX file refers to and declares, read from its protobuf structure without loading
its weights (and without the ``onnx`` package, which the runtime does not install).

:func:`scan_onnx` walks the ``ModelProto`` wire format (field numbers of ``onnx/onnx.proto``,
https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) and skips every weight blob
(``raw_data`` and the typed data fields) by its length, so a 1 GB encoder costs a few
thousand field headers. It collects:

- every tensor whose data lives in an external file (``TensorProto.external_data`` /
  ``data_location = EXTERNAL``), in the main graph, subgraphs (``If``/``Loop`` bodies),
  functions and training graphs: onnxruntime opens those files relative to the model;
- the model's ``metadata_props``;
- the main graph's initializer shapes and its inputs' and outputs' shapes.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import OnnxFormatError

MAX_NESTING = 32
"""Deepest nesting of graphs (subgraphs of subgraphs ...) a scanned model may have."""

# field numbers (onnx.proto)
_MODEL_GRAPH, _MODEL_METADATA, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 14, 20, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE = 1, 5, 11, 12, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_FUNCTION_NODE = 7
_TRAINING_GRAPHS = (1, 2)  # initialization, algorithm
_SPARSE_TENSORS = (1, 2)  # values, indices
_TENSOR_DIMS, _TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 1, 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_TYPE_SHAPE, _SHAPE_DIM, _DIM_VALUE = 1, 2, 1, 1


@dataclass
class ExternalData:
    """One tensor kept outside the model file: ``location`` relative to the model's folder,
    ``offset`` and ``length`` in bytes (None when not given)."""

    tensor: str
    location: str | None
    offset: int | None
    length: int | None


@dataclass
class OnnxSummary:
    """What :func:`scan_onnx` found. Shapes list ``None`` for a symbolic dimension."""

    external: list[ExternalData] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    initializers: dict[str, list[int]] = field(default_factory=dict)
    inputs: dict[str, list[int | None]] = field(default_factory=dict)
    outputs: dict[str, list[int | None]] = field(default_factory=dict)


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: mmap.mmap | bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, value or start, end)`` of each field in ``buf[pos:end]``;
    for wire type 2 the value is the payload's start, else the scalar value."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise OnnxFormatError("truncated fixed-size field")
            yield number, wire, int.from_bytes(buf[pos : pos + size], "little"), pos + size
            pos += size
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise OnnxFormatError("a field runs past the end of its message")
            yield number, wire, pos, pos + size
            pos += size
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")


def _text(buf: mmap.mmap | bytes, start: int, end: int) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise OnnxFormatError("a name is not UTF-8 text") from None


class _Scanner:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.out = OnnxSummary()

    def model(self, pos: int, end: int) -> None:
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if wire != 2:
                continue
            if number == _MODEL_GRAPH:
                self.graph(start, stop, 0, main=True)
            elif number == _MODEL_METADATA:
                key, value = self.entry(start, stop)
                self.out.metadata[key] = value
            elif number == _MODEL_FUNCTIONS:
                for n, w, s, e in _fields(self.buf, start, stop):
                    if n == _FUNCTION_NODE and w == 2:
                        self.node(s, e, 1)
            elif number == _MODEL_TRAINING:
                for n, w, s, e in _fields(self.buf, start, stop):
                    if n in _TRAINING_GRAPHS and w == 2:
                        self.graph(s, e, 1)

    def graph(self, pos: int, end: int, depth: int, main: bool = False) -> None:
        if depth > MAX_NESTING:
            raise OnnxFormatError(f"graphs nested deeper than {MAX_NESTING} levels")
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if wire != 2:
                continue
            if number == _GRAPH_NODE:
                self.node(start, stop, depth)
            elif number == _GRAPH_INITIALIZER:
                name, dims = self.tensor(start, stop)
                if main:
                    self.out.initializers[name] = dims
            elif number == _GRAPH_SPARSE:
                self.sparse(start, stop)
            elif main and number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
                name, shape = self.value_info(start, stop)
                (self.out.inputs if number == _GRAPH_INPUT else self.out.outputs)[name] = shape

    def node(self, pos: int, end: int, depth: int) -> None:
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if number != _NODE_ATTRIBUTE or wire != 2:
                continue
            for n, w, s, e in _fields(self.buf, start, stop):
                if w != 2:
                    continue
                if n in (_ATTR_T, _ATTR_TENSORS):
                    self.tensor(s, e)
                elif n in (_ATTR_G, _ATTR_GRAPHS):
                    self.graph(s, e, depth + 1)
                elif n in (_ATTR_SPARSE, _ATTR_SPARSES):
                    self.sparse(s, e)

    def sparse(self, pos: int, end: int) -> None:
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if number in _SPARSE_TENSORS and wire == 2:
                self.tensor(start, stop)

    def tensor(self, pos: int, end: int) -> tuple[str, list[int]]:
        name, dims, entries, external = "", [], {}, False
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if number == _TENSOR_NAME and wire == 2:
                name = _text(self.buf, start, stop)
            elif number == _TENSOR_DIMS and wire == 0:
                dims.append(start)
            elif number == _TENSOR_DIMS and wire == 2:  # packed
                p = start
                while p < stop:
                    dim, p = _varint(self.buf, p, stop)
                    dims.append(dim)
            elif number == _TENSOR_EXTERNAL and wire == 2:
                key, value = self.entry(start, stop)
                entries[key] = value
            elif number == _TENSOR_LOCATION and wire == 0:
                external = start == _EXTERNAL
        if external or entries:
            self.out.external.append(
                ExternalData(
                    name,
                    entries.get("location"),
                    _number(entries.get("offset"), "offset"),
                    _number(entries.get("length"), "length"),
                )
            )
        return name, dims

    def entry(self, pos: int, end: int) -> tuple[str, str]:
        key = value = ""
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if wire == 2 and number == 1:
                key = _text(self.buf, start, stop)
            elif wire == 2 and number == 2:
                value = _text(self.buf, start, stop)
        return key, value

    def value_info(self, pos: int, end: int) -> tuple[str, list[int | None]]:
        name, shape = "", []
        for number, wire, start, stop in _fields(self.buf, pos, end):
            if wire != 2:
                continue
            if number == _VALUE_NAME:
                name = _text(self.buf, start, stop)
            elif number == _VALUE_TYPE:
                shape = self.tensor_shape(start, stop)
        return name, shape

    def tensor_shape(self, pos: int, end: int) -> list[int | None]:
        shape: list[int | None] = []
        for n, w, s, e in _fields(self.buf, pos, end):  # TypeProto
            if n != _TYPE_TENSOR or w != 2:
                continue
            for n2, w2, s2, e2 in _fields(self.buf, s, e):  # TypeProto.Tensor
                if n2 != _TENSOR_TYPE_SHAPE or w2 != 2:
                    continue
                for n3, w3, s3, e3 in _fields(self.buf, s2, e2):  # TensorShapeProto
                    if n3 != _SHAPE_DIM or w3 != 2:
                        continue
                    dim: int | None = None
                    for n4, w4, v4, _ in _fields(self.buf, s3, e3):  # Dimension
                        if n4 == _DIM_VALUE and w4 == 0:
                            dim = v4
                    shape.append(dim)
        return shape


def _number(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise OnnxFormatError(f"external data {what} {text!r} is not a byte count")
    return int(text)


def scan_onnx(path: str | os.PathLike[str]) -> OnnxSummary:
    """Scan the ONNX model at ``path`` (see the module docstring).

    Raises :class:`OnnxFormatError` (a ``ValueError``) when the file is not a well-formed
    ``ModelProto``, ``OSError`` when it cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise OnnxFormatError("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            scanner = _Scanner(buf)
            scanner.model(0, size)
            return scanner.out


__all__ = ["MAX_NESTING", "ExternalData", "OnnxFormatError", "OnnxSummary", "scan_onnx"]
