"""The llama.cpp and libmtmd C objects the reasoner holds, one small class each.

Each class owns one C object, created in ``__init__`` (a :class:`ReasonerLoadError` or
``RuntimeError`` with llama.cpp's own log lines when the C call returns NULL) and freed by
``close()`` through a :class:`contextlib.ExitStack`, as llama-cpp-python's
``llama_cpp/_internals.py`` does (``LlamaModel``, ``LlamaContext``, ``LlamaBatch``,
``LlamaSampler``); ``close()`` is idempotent. An owner closes what it holds in the reverse
order of creation (a context before its model) through its own ``ExitStack``; no class frees
in ``__del__``, where the order would be the garbage collector's.

The image side (``mtmd_bitmap``, ``mtmd_input_chunks``) is in
:mod:`segzero_edge.reasoner.llama_chunks`.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from pathlib import Path
from typing import Any, TypeVar

import llama_cpp
from llama_cpp import mtmd_cpp

from ..errors import ReasonerLoadError
from .llama_log import LOG_SINK

_T = TypeVar("_T", bound="CObject")


class CObject:
    """One C object freed by :meth:`close` (an ``ExitStack`` callback); a context manager."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def close(self) -> None:
        """Free the C object (idempotent)."""
        self._stack.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LlamaModel(CObject):
    """``llama_model`` loaded from a GGUF file (``llama_model_load_from_file``) and its vocab.

    Raises:
        ReasonerLoadError: llama.cpp could not load ``path`` (its log's errors in the message).
    """

    def __init__(self, path: Path, params: llama_cpp.llama_model_params) -> None:
        super().__init__()
        n_log = LOG_SINK.count
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        LOG_SINK.raise_interrupt()
        if not model:
            raise ReasonerLoadError(
                f"llama.cpp could not load {path}: {LOG_SINK.errors_since(n_log)}"
            )
        self.ptr: llama_cpp.llama_model_p = model
        self._stack.callback(llama_cpp.llama_model_free, model)
        vocab = llama_cpp.llama_model_get_vocab(model)
        if not vocab:
            self.close()
            raise ReasonerLoadError(f"{path} has no vocabulary")
        self.vocab: llama_cpp.llama_vocab_p = vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.n_embd_inp = int(llama_cpp.llama_model_n_embd_inp(model))
        """Width of one input embedding (an image token's embedding from libmtmd)."""

    def meta(self, key: str) -> str:
        """A string metadata value of the GGUF ('' when absent)."""
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else ""


class LlamaContext(CObject):
    """``llama_context`` on a model (``llama_init_from_model``): the KV cells and the logits.

    Raises:
        ReasonerLoadError: llama.cpp could not create it (its log's errors in the message).
    """

    def __init__(self, model: LlamaModel, params: llama_cpp.llama_context_params) -> None:
        super().__init__()
        n_log = LOG_SINK.count
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        LOG_SINK.raise_interrupt()
        if not ctx:
            raise ReasonerLoadError(
                f"llama.cpp could not create a context: {LOG_SINK.errors_since(n_log)}"
            )
        self.ptr: llama_cpp.llama_context_p = ctx
        self._stack.callback(llama_cpp.llama_free, ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        """KV cells (llama.cpp rounds the requested ``n_ctx`` up to a multiple of 256)."""

    def memory(self) -> Any:
        """The context's ``llama_memory_t`` (the KV cache)."""
        return llama_cpp.llama_get_memory(self.ptr)


class LlamaBatch(CObject):
    """``llama_batch`` of up to ``n_tokens`` token ids, one sequence (``llama_batch_init``)."""

    def __init__(self, n_tokens: int) -> None:
        super().__init__()
        self.batch = llama_cpp.llama_batch_init(n_tokens, 0, 1)
        self._stack.callback(llama_cpp.llama_batch_free, self.batch)


class MtmdContext(CObject):
    """libmtmd's vision context: the mmproj GGUF's encoder bound to a text model.

    Raises:
        ReasonerLoadError: libmtmd could not load ``path``, or it has no vision encoder.
    """

    def __init__(self, path: Path, model: LlamaModel, params: mtmd_cpp.mtmd_context_params) -> None:
        super().__init__()
        n_log = LOG_SINK.count
        ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), model.ptr, params)
        LOG_SINK.raise_interrupt()
        if not ctx:
            raise ReasonerLoadError(
                f"libmtmd could not load {path}: {LOG_SINK.errors_since(n_log)}"
            )
        self.ptr: mtmd_cpp.mtmd_context_p = ctx
        self._stack.callback(mtmd_cpp.mtmd_free, ctx)
        if not mtmd_cpp.mtmd_support_vision(ctx):
            self.close()
            raise ReasonerLoadError(f"{path} has no vision encoder")
        self.marker = (mtmd_cpp.mtmd_default_marker() or b"<__media__>").decode()
        """libmtmd's media marker (``<__media__>``)."""


def _grammar(vocab: llama_cpp.llama_vocab_p, gbnf: str) -> llama_cpp.llama_sampler_p:
    """The one place a grammar sampler is built (``llama_sampler_init_grammar``, rule
    ``root``); the caller frees it (a chain frees what was added to it)."""
    g: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_init_grammar(
        vocab, gbnf.encode(), b"root"
    )
    if not g:
        raise RuntimeError("llama.cpp rejected the answer grammar")
    return g


class GrammarSampler(CObject):
    """A GBNF grammar sampler alone: masks the tokens ``gbnf`` does not allow next."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p, gbnf: str) -> None:
        super().__init__()
        self.ptr = _grammar(vocab, gbnf)
        self._stack.callback(llama_cpp.llama_sampler_free, self.ptr)

    def accepts(self, tokens: list[int]) -> bool:
        """Accept ``tokens`` in order while the grammar allows each; False at the first token
        it would mask (that token and the rest are not accepted)."""
        for tok in tokens:
            cand = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(tok, 0.0, 0.0))
            arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
            llama_cpp.llama_sampler_apply(self.ptr, ctypes.byref(arr))
            if arr.size != 1 or not math.isfinite(cand[0].logit):
                return False
            llama_cpp.llama_sampler_accept(self.ptr, tok)
        return True


class GreedySampler(CObject):
    """A sampler chain: the answer grammar when ``gbnf`` is given, then greedy (arg max)."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p, gbnf: str | None = None) -> None:
        super().__init__()
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self.ptr = chain
        self._stack.callback(llama_cpp.llama_sampler_free, chain)
        if gbnf is not None:
            try:
                llama_cpp.llama_sampler_chain_add(chain, _grammar(vocab, gbnf))
            except RuntimeError:
                self.close()
                raise
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())

    def sample(self, ctx: LlamaContext) -> int:
        """The next token from the last logits of ``ctx`` (accepted into the chain)."""
        return int(llama_cpp.llama_sampler_sample(self.ptr, ctx.ptr, -1))

    def accept(self, token: int) -> None:
        """Advance the chain (its grammar) over ``token`` without sampling it."""
        llama_cpp.llama_sampler_accept(self.ptr, token)
