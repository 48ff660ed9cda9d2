"""The prompt as libmtmd input chunks: the image bitmap, tokenization, and reading the chunks.

:func:`tokenize_prompt` tokenizes the chat template's parts (:func:`~.chat.chat_parts`) with
``mtmd_tokenize_from_parts``: template parts with special tokens parsed, the caller's prompt as
plain text, so a query can neither inject control tokens nor a second image.
:meth:`MtmdChunks.read` is the one place the chunks' tokens are read.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_cpp import mtmd_cpp

from .chat import chat_parts, utf8
from .llama_objects import CObject, MtmdContext


class MtmdBitmap(CObject):
    """An RGB image as libmtmd's ``mtmd_bitmap`` (a copy of the pixels).

    ``image``: H x W x 3 uint8 RGB, H and W multiples of ``patch_merge`` (the reasoner's input
    is ``resize_size`` x ``resize_size``). Raises ``ValueError`` for any other array.
    """

    def __init__(self, image: np.ndarray, patch_merge: int, resize_size: int) -> None:
        super().__init__()
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError("image must be an H x W x 3 uint8 numpy array")
        h, w, c = image.shape
        if c != 3 or h % patch_merge or w % patch_merge:
            raise ValueError(
                f"image must be H x W x 3 with H, W multiples of {patch_merge} "
                f"(the reasoner input is {resize_size} x {resize_size}); got {image.shape}"
            )
        data = np.ascontiguousarray(image).tobytes()
        bmp = mtmd_cpp.mtmd_bitmap_init(w, h, (ctypes.c_ubyte * len(data)).from_buffer_copy(data))
        if not bmp:
            raise RuntimeError("mtmd_bitmap_init failed")
        self.ptr: mtmd_cpp.mtmd_bitmap_p = bmp
        self._stack.callback(mtmd_cpp.mtmd_bitmap_free, bmp)


@dataclass(frozen=True)
class Chunk:
    """One libmtmd input chunk: ``tokens`` are a text chunk's ids (``None`` for an image);
    ``n_tokens`` the KV cells it takes. ``ptr`` is valid while its :class:`MtmdChunks` is."""

    ptr: Any
    tokens: tuple[int, ...] | None
    n_tokens: int

    @property
    def ids(self) -> list[int]:
        """The token ids; ``-1`` for each image token."""
        return list(self.tokens) if self.tokens is not None else [-1] * self.n_tokens


class MtmdChunks(CObject):
    """``mtmd_input_chunks``: a tokenized prompt, text and image chunks in order."""

    def __init__(self) -> None:
        super().__init__()
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        if not chunks:
            raise RuntimeError("mtmd_input_chunks_init failed")
        self.ptr: mtmd_cpp.mtmd_input_chunks_p = chunks
        self._stack.callback(mtmd_cpp.mtmd_input_chunks_free, chunks)

    def read(self) -> list[Chunk]:
        """The chunks in order, with their text tokens (the one reader of them).

        Raises ``RuntimeError`` for a chunk that is neither text nor image (audio).
        """
        mt = mtmd_cpp
        out: list[Chunk] = []
        for i in range(mt.mtmd_input_chunks_size(self.ptr)):
            chunk = mt.mtmd_input_chunks_get(self.ptr, i)
            if not chunk:
                raise RuntimeError(f"mtmd_input_chunks_get returned no chunk {i}")
            kind = mt.mtmd_input_chunk_get_type(chunk)
            n_tok = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
            if kind == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                toks = tuple(int(ptr[j]) for j in range(n.value)) if ptr else ()
                out.append(Chunk(chunk, toks, n_tok))
            elif kind == mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                out.append(Chunk(chunk, None, n_tok))
            else:
                raise RuntimeError(f"unexpected mtmd chunk type {kind}")
        return out


def tokenize_prompt(
    mtmd: MtmdContext, bitmap: MtmdBitmap, prompt: str, system_prompt: str | None
) -> MtmdChunks:
    """The chat text around ``prompt`` with ``bitmap`` in the image's place, as chunks (the
    caller closes them).

    Each template part is tokenized with special tokens parsed, ``prompt`` as plain text
    (``mtmd_tokenize_from_parts``: no media markers are looked for in any part). For text
    without special-token strings the ids equal tokenizing the whole chat text at once.
    Raises ``ValueError`` for a prompt with a lone surrogate.
    """
    mt = mtmd_cpp
    keep: list[Any] = []  # the ctypes objects the parts point into, alive until the call
    parts: list[Any] = []
    for kind, text in chat_parts(prompt, system_prompt):
        part = mt.mtmd_input_part()
        if kind == "image":
            part.bitmap = bitmap.ptr
        else:
            raw = utf8(text, "prompt")
            t = mt.mtmd_input_text()
            t.text, t.text_len = raw, len(raw)
            t.add_special, t.parse_special = False, kind == "template"
            keep.append((t, raw))
            part.text = ctypes.pointer(t)
        keep.append(part)
        parts.append(ctypes.pointer(part))
    arr = (ctypes.POINTER(mt.mtmd_input_part) * len(parts))(*parts)
    chunks = MtmdChunks()
    rc = mt.mtmd_tokenize_from_parts(mtmd.ptr, chunks.ptr, arr, len(parts), False)
    if rc != 0:
        chunks.close()
        raise RuntimeError(f"mtmd_tokenize_from_parts failed with code {rc}")
    return chunks
