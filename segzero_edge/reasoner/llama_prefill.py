"""Prefill: evaluate the prompt's chunks, reusing a frame's saved KV prefix.

The prompt puts the image before the query, so the KV state after the image (the *prefix*) is
the same for every query on a frame. It is saved with llama.cpp's sequence state API
(``llama_state_seq_get_data``) into the byte-bounded LRU
:class:`~segzero_edge.reasoner.prefix_cache.PrefixCache` (keyed by frame content) and
restored (``llama_state_seq_set_data``) for a later query, which then evaluates only its own
tokens from the position the image left (M-RoPE: an image of ``nx x ny`` tokens advances
positions by ``max(nx, ny)``, not by its token count). The restored cells land where a cold
run puts them, so greedy output is token-for-token the same as without the cache.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp

from .llama_chunks import Chunk
from .llama_engine import Engine
from .llama_log import LOG_SINK
from .prefix_cache import PrefixCache, PrefixState, Signature


@dataclass
class Prefill:
    """What a prefill did: ``n_past`` the position the generation starts at; ``n_prompt_tokens``
    the prompt's KV cells (``n_image_tokens`` of them the image's); ``vision_encode`` and
    ``prefill`` seconds (a prefix restore counts as prefill). With ``text_logits`` requested:
    ``text_logits`` ``[n_text_tokens_after_image, n_vocab]`` float32 and ``image_embd``
    ``[n_image_tokens, n_embd]`` float32 (``None`` for a cache hit, which encodes no image)."""

    n_past: int = 0
    n_prompt_tokens: int = 0
    n_image_tokens: int = 0
    vision_encode: float = 0.0
    prefill: float = 0.0
    prefix_cache_hit: bool = False
    text_logits: np.ndarray | None = None
    image_embd: np.ndarray | None = None


def prefill(
    engine: Engine,
    chunks: list[Chunk],
    cache: PrefixCache,
    frame_key: str | None,
    *,
    text_logits: bool = False,
) -> Prefill:
    """Evaluate ``chunks`` from an empty context (the caller cleared it and checked the room).

    The prefix is every chunk up to the image. With ``frame_key`` and ``cache`` enabled, a
    frame whose prefix is cached is restored and only the chunks after the image are evaluated
    (``prefix_cache_hit``); otherwise the state after the prefix is stored under ``frame_key``.
    """
    res = Prefill(n_prompt_tokens=sum(c.n_tokens for c in chunks))
    for c in chunks:
        if c.tokens is None:
            res.n_image_tokens = c.n_tokens
    split = max((i + 1 for i, c in enumerate(chunks) if c.tokens is None), default=0)
    signature: Signature = tuple(
        (-1, c.n_tokens) if c.tokens is None else c.tokens for c in chunks[:split]
    )
    key = frame_key if frame_key and split and cache.enabled else None
    entry = cache.get(key, signature) if key else None
    t0 = time.perf_counter()
    n_past = 0
    if key and entry is not None:
        n_past = restore_prefix(engine, entry)
        if n_past < 0:  # llama.cpp refused the state: forget it, evaluate everything
            cache.discard(key)
            entry, n_past = None, 0
            engine.clear()
    res.prefill += time.perf_counter() - t0
    res.prefix_cache_hit = entry is not None
    seen_image = entry is not None
    text_after: list[np.ndarray] = []
    for i in range(split if entry is not None else 0, len(chunks)):
        chunk = chunks[i]
        if chunk.tokens is not None:
            t0 = time.perf_counter()
            mode = "all" if (text_logits and seen_image) else "last"
            lg = engine.decode(list(chunk.tokens), n_past, mode)
            res.prefill += time.perf_counter() - t0
            if lg is not None:
                text_after.append(lg)
            n_past += len(chunk.tokens)
        else:
            n_past = decode_image(engine, chunk, n_past, res, text_logits)
            seen_image = True
        if key and entry is None and i == split - 1:
            t0 = time.perf_counter()
            cache.put(key, save_prefix(engine, signature, n_past))
            res.prefill += time.perf_counter() - t0
    res.n_past = n_past
    if text_logits:
        res.text_logits = np.concatenate(text_after) if text_after else None
    return res


def decode_image(engine: Engine, chunk: Chunk, n_past: int, res: Prefill, keep_embd: bool) -> int:
    """Encode an image chunk and decode its embeddings at ``n_past``; the next position.

    libmtmd gives the image tokens M-RoPE positions (t, y, x) and returns the next text
    position, which is ``n_past + max(nx, ny)``, not ``n_past + n_tokens``.
    """
    mt = mtmd_cpp
    t0 = time.perf_counter()
    rc = mt.mtmd_encode_chunk(engine.mtmd.ptr, chunk.ptr)
    LOG_SINK.raise_interrupt()
    if rc != 0:
        raise RuntimeError("mtmd_encode_chunk failed")
    res.vision_encode += time.perf_counter() - t0
    embd = mt.mtmd_get_output_embd(engine.mtmd.ptr)
    if embd is None:
        raise RuntimeError("mtmd_get_output_embd returned no embeddings")
    if keep_embd:
        n_embd = engine.model.n_embd_inp
        flat = np.ctypeslib.as_array(embd, shape=(chunk.n_tokens * n_embd,))
        res.image_embd = flat.reshape(chunk.n_tokens, n_embd).copy()
    t0 = time.perf_counter()
    new_past = llama_cpp.llama_pos(0)
    rc = mt.mtmd_helper_decode_image_chunk(
        engine.mtmd.ptr,
        engine.ctx.ptr,
        chunk.ptr,
        embd,
        n_past,
        0,
        engine.n_batch,
        ctypes.byref(new_past),
        mt.mtmd_helper_post_decode_callback(),
        None,
    )
    LOG_SINK.raise_interrupt()
    if rc != 0:
        raise RuntimeError(f"decoding the image embeddings failed ({rc})")
    res.prefill += time.perf_counter() - t0
    # M-RoPE: n_tokens cells, but the position moves by far less (30 for 900)
    engine.cells += chunk.n_tokens
    engine.next_pos = int(new_past.value)
    return engine.next_pos


def save_prefix(engine: Engine, signature: Signature, n_past: int) -> PrefixState:
    """Sequence 0's KV state (cells, positions incl. M-RoPE, K and V) into host memory."""
    ll = llama_cpp
    ctx = engine.ctx.ptr
    size = int(ll.llama_state_seq_get_size(ctx, 0))
    buf = (ctypes.c_uint8 * size)()
    n = int(ll.llama_state_seq_get_data(ctx, buf, size, 0))
    if n == 0:
        raise RuntimeError("llama_state_seq_get_data wrote nothing")
    pos_max = int(ll.llama_memory_seq_pos_max(engine.ctx.memory(), 0))
    return PrefixState(signature, buf, n, engine.cells, n_past, pos_max)


def restore_prefix(engine: Engine, entry: PrefixState) -> int:
    """Load ``entry`` into the (empty) sequence 0; the next position, or -1 on failure."""
    ll = llama_cpp
    n = int(ll.llama_state_seq_set_data(engine.ctx.ptr, entry.state, entry.nbytes, 0))
    pos_max = int(ll.llama_memory_seq_pos_max(engine.ctx.memory(), 0))
    if n != entry.nbytes or pos_max != entry.pos_max:
        return -1
    engine.cells, engine.next_pos = entry.n_tokens, entry.n_past
    return entry.n_past
