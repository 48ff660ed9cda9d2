"""Qwen2.5-VL / Qwen3-VL reasoner on llama.cpp (llama-cpp-python's C API + libmtmd for the
image).

One user turn (image, then the prompt) under the backbone's chat template
(:mod:`~.chat`), greedy decoding and a token budget (:mod:`~.llama_decoding`). The backbone is
read from the text GGUF's ``general.architecture`` (:data:`~.chat.BACKBONES`): ``qwen2vl``
(Qwen2.5-VL) has the default system prompt and 28-pixel image tokens, ``qwen3vl``
(Qwen3-VL-Instruct's template) no system turn and 32-pixel tokens. The 840 x 840 Qwen2.5-VL
image gives exactly 900 image tokens (60 x 60 patches merged 2 x 2); a Qwen3-VL family's
resize (832 x 832 for ``qwen3vl-grounding``) gives ``(resize_size / 32) ** 2``: the mtmd
context is created with ``image_min_tokens = image_max_tokens = image_tokens`` so llama.cpp
neither up- nor down-scales it.

The caller's prompt is tokenized as plain text (:mod:`~.llama_chunks`): only the chat
template's own markers become special tokens (``<|im_end|>`` typed in a query stays text), and
libmtmd's media marker in a prompt is text too. Budgets count KV cells, not positions: with
M-RoPE the 900 image tokens take 900 cells but advance the position by only 30. A prompt that
does not fit ``n_ctx`` is a ``ValueError`` before anything is decoded; a generation that fills
the context ends ``truncated``. ``close()`` waits for a call in progress on another thread.

Several queries on one frame reuse the frame's KV prefix (everything up to the image) from a
byte-bounded LRU (:mod:`~.llama_prefill`, :class:`~.prefix_cache.PrefixCache`); greedy output is
token-for-token the same as without the cache.

The modules: :mod:`~.chat` (template), :mod:`~.llama_log` (the process's llama.cpp log sink
and Ctrl+C), :mod:`~.llama_objects` (one class per C object), :mod:`~.llama_engine` (the
loaded objects and KV cells), :mod:`~.llama_chunks` (tokenization), :mod:`~.llama_prefill`
(prefill, KV prefix save and restore), :mod:`~.llama_decoding` (the think/answer policy).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ReasonerOutput
from ..errors import ReasonerLoadError
from ..image import frame_key as content_key
from ..layout import DEFAULT_MAX_OBJECTS, MAX_N_CTX
from ..options import real_number
from . import grammar as gbnf
from .chat import chat_parts, chat_prompt
from .defaults import (
    DEFAULT_KV_CACHE_TYPE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_N_BATCH,
    DEFAULT_N_CTX,
    DEFAULT_THINK_BUDGET,
)
from .llama_chunks import MtmdBitmap, tokenize_prompt
from .llama_decoding import Decoder, GenerationStats
from .llama_engine import KV_CACHE_TYPES, Engine, open_engine
from .llama_log import ERROR, LOG_SINK, WARN, capture_log, install_log_sink, interruptible
from .llama_prefill import Prefill, prefill
from .prefix_cache import DEFAULT_PREFIX_CACHE_MB, PrefixCache

__all__ = [
    "GenerationStats",
    "LlamaCppReasoner",
    "ReasonerLoadError",
    "capture_log",
    "chat_parts",
    "chat_prompt",
]


class LlamaCppReasoner:
    """:class:`segzero_edge.backends.Reasoner` on llama.cpp with a Qwen2.5-VL or Qwen3-VL GGUF
    pair."""

    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str],
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        n_batch: int = DEFAULT_N_BATCH,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        think_budget: int = DEFAULT_THINK_BUDGET,
        grammar: bool = True,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        answer_grammar: gbnf.AnswerGrammar | None = None,
        image_tokens: int | None = None,
        kv_cache_type: str = DEFAULT_KV_CACHE_TYPE,
        warmup: bool = True,
        verbose: bool = False,
        extra_bufts: bool | None = None,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
        use_mmap: bool | None = None,
        fixed_length: bool = False,
    ) -> None:
        """Load ``model_path`` (text GGUF, any quantization) and ``mmproj_path`` (vision GGUF).

        ``max_new_tokens`` caps plain greedy generation (``grammar=False``) and the thinking
        part with the grammar; ``think_budget`` caps the thinking part with the grammar (the
        grammar-constrained answer has its own bound, ``AnswerGrammar.max_chars``).
        ``answer_grammar`` is the model family's answer grammar
        (``ModelFamily.answer_grammar``); without one, the multi-object grammar with
        ``max_objects`` objects.
        ``image_tokens`` pins libmtmd's min = max image tokens, a square number (the model
        family's ``image_tokens``: 900 for Qwen2.5-VL at 840 x 840, 676 for Qwen3-VL at
        832 x 832); ``None``: the backbone's default (:data:`~.chat.BACKBONES`). Images passed
        in must then be ``resize_size`` x ``resize_size`` (``sqrt(image_tokens) *
        patch_merge`` pixels) or at least multiples of ``patch_merge``.
        ``n_gpu_layers=-1`` offloads everything when llama.cpp was built with CUDA; 0 = CPU.
        ``warmup=False`` skips libmtmd's warm-up encode (faster start, first image slower).
        ``verbose`` prints the llama.cpp log (it is always kept in ``load_log`` for the
        loading phase).
        ``n_ctx`` is the number of KV cells (1 to ``layout.MAX_N_CTX``; llama.cpp rounds it up
        to a multiple of 256).
        ``extra_bufts`` sets ``llama_model_params.use_extra_bufts`` (weights repacked into
        llama.cpp's CPU_REPACK / AMX buffer types); ``None`` decides as
        :func:`segzero_edge.reasoner.llama_system.decide_extra_bufts` does: off where llama.cpp
        reports AMX (its AMX kernels crash on some CPUs), on elsewhere,
        ``$SEGZERO_LLAMA_EXTRA_BUFTS=1/0`` forces. ``info`` records the choice, the reason,
        llama.cpp's CPU features and the buffer types the weights went to.
        ``prefix_cache_mb`` bounds the per-frame prefix cache (MiB of
        saved KV state; 0 turns it off); see the module docstring and :attr:`prefix_cache`.
        ``use_mmap``: map the GGUF instead of reading it. ``None`` = not when the layers run
        on the CPU with repacking on (``extra_bufts``): llama.cpp then copies the quantized
        matrices into its SIMD layouts and, mapped, the original pages stay resident beside
        the copies (Qwen2.5-VL-3B Q4_K_M: 3.1 GiB resident mapped, 1.9 GiB read).
        ``fixed_length``: for benchmarking only. Every :meth:`generate` decodes exactly
        ``max_new_tokens`` tokens (fewer only when the context fills), greedy, ignoring
        end-of-generation tokens and stop strings, the same work per token as
        ``transformers`` ``generate`` with ``min_new_tokens == max_new_tokens``; the output
        always ends ``truncated`` and its text is not an answer. Needs ``grammar=False``.

        Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a bad option and
        :class:`ReasonerLoadError` (a ``BackendError``) when llama.cpp cannot load the files
        or this CPU lacks instructions the llama.cpp build needs.
        """
        self._lock = threading.RLock()  # one call at a time; close() waits for it
        self._engine: Engine | None = None
        paths = {"model": Path(model_path), "mmproj": Path(mmproj_path)}
        for what, p in paths.items():
            if not p.is_file():
                raise FileNotFoundError(f"reasoner {what} file not found: {p}")
        if max_new_tokens < 1 or think_budget < 0:
            raise ValueError("max_new_tokens must be >= 1 and think_budget >= 0")
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or not 1 <= n_ctx <= MAX_N_CTX:
            raise ValueError(f"n_ctx must be an integer from 1 to {MAX_N_CTX}, got {n_ctx!r}")
        prefix_cache_mb = real_number("prefix_cache_mb", prefix_cache_mb, minimum=0)
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20))
        if kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(
                f"kv_cache_type must be one of {sorted(KV_CACHE_TYPES)}, got {kv_cache_type!r}"
            )
        if fixed_length and grammar:
            raise ValueError("fixed_length=True decodes without the answer grammar: grammar=False")
        self.max_new_tokens = int(max_new_tokens)
        self.think_budget = int(think_budget)
        self.use_grammar = bool(grammar)
        self.fixed_length = bool(fixed_length)
        """Whether :meth:`generate` decodes exactly ``max_new_tokens`` (benchmarking)."""
        if image_tokens is not None and (
            isinstance(image_tokens, bool)
            or not isinstance(image_tokens, int)
            or image_tokens < 1
            or math.isqrt(image_tokens) ** 2 != image_tokens
        ):
            raise ValueError(f"image_tokens must be a positive square number, got {image_tokens!r}")
        answer_grammar = answer_grammar or gbnf.list_answer_grammar(max_objects)
        self.grammar_text = answer_grammar.gbnf
        self._answer_cap = answer_grammar.max_chars + 8
        self.last_stats = GenerationStats()
        self._open(paths, n_ctx, n_gpu_layers, n_threads, n_batch, kv_cache_type, image_tokens,
                   warmup, verbose, extra_bufts, use_mmap)  # fmt: skip

    def _open(
        self,
        paths: dict[str, Path],
        n_ctx: int,
        n_gpu_layers: int,
        n_threads: int | None,
        n_batch: int,
        kv_cache_type: str,
        image_tokens: int | None,
        warmup: bool,
        verbose: bool,
        extra_bufts: bool | None,
        use_mmap: bool | None,
    ) -> None:
        install_log_sink(verbose)
        n_log = LOG_SINK.count
        engine = self._engine = open_engine(
            paths["model"],
            paths["mmproj"],
            n_ctx=int(n_ctx),
            n_gpu_layers=int(n_gpu_layers),
            n_threads=int(n_threads or os.cpu_count() or 1),
            n_batch=int(n_batch),
            kv_cache_type=kv_cache_type,
            image_tokens=image_tokens,
            warmup=bool(warmup),
            extra_bufts=extra_bufts,
            use_mmap=use_mmap,
        )
        self.info: dict[str, Any] = engine.info
        self.device_kind = engine.device_kind
        """Where the layers run: "gpu" (offloaded) or "cpu"."""
        self.n_threads = engine.n_threads
        self.arch = engine.arch
        """The text GGUF's architecture (``qwen2vl``, ``qwen3vl``)."""
        self.system_prompt = engine.backbone.system_prompt
        self.patch_merge = engine.backbone.patch_merge
        self.image_tokens = engine.image_tokens
        self.resize_size = engine.resize_size
        """Side (pixels) of the square image that gives exactly ``image_tokens`` tokens (the
        family's ``resize_size``)."""
        self.n_vocab = engine.model.n_vocab
        self.n_batch = engine.n_batch
        self.n_ctx = engine.n_ctx
        self.load_log = LOG_SINK.since(n_log)

    # -- the engine's public face ----------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The loaded llama.cpp objects. Raises ``RuntimeError`` after :meth:`close`."""
        if self._engine is None:
            raise RuntimeError("this LlamaCppReasoner has been closed")
        return self._engine

    @property
    def load_warnings(self) -> list[str]:
        """Warning and error lines llama.cpp / mtmd logged while loading this model."""
        return [s for lvl, s in self.load_log if lvl in (WARN, ERROR) and s.strip()]

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Tokens of ``text``, no BOS added; with ``special`` the text of special tokens (e.g.
        ``<|im_end|>``) becomes those tokens, else it is tokenized as plain text."""
        return self.engine.tokenize(text, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes of ``token``'s text."""
        return self.engine.piece(token)

    @property
    def free_cells(self) -> int:
        """KV cells still free in the context (``n_ctx`` minus the cells in use)."""
        return self.engine.free_cells

    @property
    def caches_prefix(self) -> bool:
        """Whether a frame's image prefix is kept for later prompts (``prefix_cache_mb`` > 0)."""
        return self.prefix_cache.enabled

    # -- the prompt -------------------------------------------------------------------------

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Token ids of the chat text of ``prompt`` with one image, in order; each image token
        is ``-1``. Its length is the number of KV cells the prompt takes."""
        with self._lock, interruptible():
            engine = self.engine
            blank = np.zeros((self.resize_size, self.resize_size, 3), np.uint8)
            with MtmdBitmap(blank, self.patch_merge, self.resize_size) as bmp:
                chunks = tokenize_prompt(engine.mtmd, bmp, prompt, self.system_prompt)
            with chunks:
                return [t for c in chunks.read() for t in c.ids]

    def check_prompt(self, prompt: str) -> None:
        """``ValueError`` (the one :meth:`generate` would raise, before decoding) when the
        chat text of ``prompt`` with one image leaves no KV cell free for generation.

        Tokenization only (no model work): :class:`~segzero_edge.pipeline.SegZeroEdge`
        checks every query of a ``segment_many`` call with it before the first one runs.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        self._require_room(len(self.prompt_tokens(prompt)))

    def _require_room(self, cells: int) -> None:
        """``ValueError`` when a prompt of ``cells`` KV cells leaves none for generation."""
        if cells >= self.n_ctx:
            raise ValueError(
                f"the prompt needs {cells} KV cells (image and text tokens) but the "
                f"context holds {self.n_ctx} and generation needs at least one more: "
                "shorten the query or use a larger n_ctx"
            )

    def _prefill(
        self, image: np.ndarray, prompt: str, frame_key: str | None, text_logits: bool = False
    ) -> Prefill:
        """Empty the context and evaluate image + prompt (see :func:`~.llama_prefill.prefill`).
        Raises ``ValueError`` before decoding anything for a prompt that is not text or leaves
        no KV cell free."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        engine = self.engine
        with MtmdBitmap(image, self.patch_merge, self.resize_size) as bmp:
            chunks = tokenize_prompt(engine.mtmd, bmp, prompt, self.system_prompt)
        with chunks:
            parts = chunks.read()
            engine.clear()  # a refused prompt leaves an empty context, as a finished call does
            self._require_room(sum(c.n_tokens for c in parts))
            return prefill(engine, parts, self.prefix_cache, frame_key, text_logits=text_logits)

    def prompt_logits(self, image: np.ndarray, prompt: str) -> dict[str, Any]:
        """Prefill only (no prefix cache), for fidelity checks against the reference model.

        Returns ``text_logits`` ``[n_text_tokens_after_image, n_vocab]`` float32,
        ``image_embd`` ``[n_image_tokens, n_embd]`` float32, ``n_image_tokens``,
        ``n_prompt_tokens`` (KV cells), ``n_past`` (the position generation would start at), and
        ``vision_encode`` and ``prefill`` in seconds.
        """
        with self._lock, interruptible():
            pre = self._prefill(image, prompt, None, text_logits=True)
        return {
            "text_logits": pre.text_logits,
            "image_embd": pre.image_embd,
            "n_image_tokens": pre.n_image_tokens,
            "n_prompt_tokens": pre.n_prompt_tokens,
            "n_past": pre.n_past,
            "vision_encode": pre.vision_encode,
            "prefill": pre.prefill,
        }

    # -- generation -------------------------------------------------------------------------

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        """Greedy generation for one image + prompt (see the module docstring).

        ``image``: ``resize_size`` x ``resize_size`` x 3 uint8 RGB (840 for Qwen2.5-VL).
        ``frame_key`` names the frame's content for the prefix cache (the pipeline passes
        :func:`segzero_edge.image.frame_key` of the original frame); without it the key is
        computed from ``image``. ``timings`` holds seconds for ``vision_encode``, ``prefill``
        (including a prefix restore), ``decode``, and ``reasoner_cache_hit`` (1.0 when the
        frame's prefix came from the cache, else 0.0). With ``fixed_length`` (benchmarking)
        it decodes exactly ``max_new_tokens`` tokens, or up to the full context.

        Raises ``ValueError`` (before decoding) for a prompt that is not text or does not fit
        ``n_ctx``, ``RuntimeError`` after :meth:`close`; a generation that fills the context
        returns ``truncated=True``.
        """
        with self._lock, interruptible():
            return self._generate(image, prompt, frame_key)

    def _generate(self, image: np.ndarray, prompt: str, frame_key: str | None) -> ReasonerOutput:
        engine = self.engine
        if frame_key is None and self.prefix_cache.enabled and isinstance(image, np.ndarray):
            frame_key = "reasoner-input:" + content_key(image)
        stats = GenerationStats()
        pre = self._prefill(image, prompt, frame_key)
        stats.n_image_tokens = pre.n_image_tokens
        stats.prefix_cache_hit = pre.prefix_cache_hit
        room = engine.free_cells
        decoder = Decoder(engine, self.grammar_text, self._answer_cap, stats)
        t0 = time.perf_counter()
        if not self.use_grammar:
            budget = min(self.max_new_tokens, room)
            n_gen, truncated = decoder.plain(pre.n_past, budget, fixed_length=self.fixed_length)
        else:
            cap = room - self._answer_cap - 16
            budget = max(0, min(self.think_budget, self.max_new_tokens, cap))
            n_gen, truncated = decoder.constrained(pre.n_past, budget)
        decode_s = time.perf_counter() - t0
        self.last_stats = stats
        return ReasonerOutput(
            text=decoder.out.decode("utf-8", errors="replace"),
            truncated=truncated,
            n_prompt_tokens=pre.n_prompt_tokens,
            n_generated_tokens=n_gen,
            timings={
                "vision_encode": pre.vision_encode,
                "prefill": pre.prefill,
                "decode": decode_s,
                "reasoner_cache_hit": 1.0 if pre.prefix_cache_hit else 0.0,
            },
        )

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free the llama.cpp objects (idempotent); waits for a call in progress."""
        with self._lock, interruptible():
            self._free()

    def _free(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def __enter__(self) -> LlamaCppReasoner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception), self._lock:
            self._free()
