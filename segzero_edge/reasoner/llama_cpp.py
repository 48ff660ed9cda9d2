"""Qwen2.5-VL / Qwen3-VL reasoner on llama.cpp (llama-cpp-python's C API + libmtmd for the
image).

One user turn (image, then the prompt) under the backbone's chat template, greedy decoding and
a token budget. The backbone is read from the text GGUF's ``general.architecture``
(:data:`BACKBONES`): ``qwen2vl`` (Qwen2.5-VL) has the default system prompt and 28-pixel image
tokens, ``qwen3vl`` (Qwen3-VL-Instruct's template) no system turn and 32-pixel tokens. The
840 x 840 Qwen2.5-VL image gives exactly 900 image tokens (60 x 60 patches merged 2 x 2); a
Qwen3-VL family's frame (832 x 832 for ``qwen3vl-grounding``) gives ``(frame / 32) ** 2``: the
mtmd context is created with ``image_min_tokens = image_max_tokens = image_tokens`` so
llama.cpp neither up- nor down-scales it.

With ``grammar=True`` the generation has two phases: the thinking text is free, limited to
``think_budget`` tokens and closed with ``</think>`` (forced when the model does not write it);
the answer is then sampled under the model family's GBNF (``answer_grammar``, see
:mod:`segzero_edge.reasoner.grammar`), so it always parses. ``grammar=False`` is plain greedy
decoding up to ``max_new_tokens``.

The caller's prompt is tokenized as plain text: only the chat template's own markers become
special tokens (``<|im_end|>`` typed in a query stays text), and libmtmd's media marker in a
prompt is text too. Budgets count KV cells, not positions: with M-RoPE the 900 image tokens
take 900 cells but advance the position by only 30. A prompt that does not fit ``n_ctx`` is a
``ValueError`` before anything is decoded; a generation that fills the context ends
``truncated``. ``close()`` waits for a call in progress on another thread.

Several queries on one frame: the prompt puts the image before the query, so the KV state after
the image (the *prefix*) is the same for every query on that frame. It is saved with llama.cpp's
sequence state API (``llama_state_seq_get_data``) into a byte-bounded LRU of frames
(:class:`~segzero_edge.reasoner.prefix_cache.PrefixCache`, keyed by frame content) and restored
(``llama_state_seq_set_data``) for a later query, which then evaluates only its own tokens from
the position the image left (M-RoPE: an image of ``nx x ny`` tokens advances positions by
``max(nx, ny)``, not by its token count). The restored cells land where a cold run puts them,
so greedy output is token-for-token the same as without the cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ReasonerOutput
from ..errors import BackendError
from ..image import frame_key as content_key
from ..layout import (
    IMAGE_TOKENS,
    MAX_N_CTX,
    PATCH_MERGE,
    QWEN3VL_FRAME,
    QWEN3VL_PATCH_MERGE,
)
from ..options import real_number
from . import grammar as gbnf
from . import llama_system
from .llama_variants import CpuVariantError
from .prefix_cache import DEFAULT_PREFIX_CACHE_MB, PrefixCache, PrefixState, Signature

SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_IMAGE_TOKENS = IMAGE_TOKENS  # 900 for 840 x 840


@dataclass(frozen=True)
class Backbone:
    """What the reasoner needs to know of a GGUF architecture: the chat template's system turn
    (``None``: none) and the pixels per image-token side; ``default_image_tokens`` is used
    when the caller pins none."""

    system_prompt: str | None
    patch_merge: int
    default_image_tokens: int


BACKBONES: dict[str, Backbone] = {
    # Qwen2.5-VL-Instruct's template adds "You are a helpful assistant." when no system turn
    "qwen2vl": Backbone(SYSTEM_PROMPT, PATCH_MERGE, IMAGE_TOKENS),
    # Qwen3-VL-Instruct's template adds no system turn
    "qwen3vl": Backbone(None, QWEN3VL_PATCH_MERGE, (QWEN3VL_FRAME // QWEN3VL_PATCH_MERGE) ** 2),
}
"""GGUF ``general.architecture`` -> :class:`Backbone`."""


class ReasonerLoadError(BackendError):
    """The GGUF files could not be loaded by llama.cpp."""


def chat_prompt(
    user_text: str, media_marker: str, system_prompt: str | None = SYSTEM_PROMPT
) -> str:
    """Qwen-VL chat text for one user turn: image (``media_marker``) then ``user_text``;
    a system turn with ``system_prompt`` first unless it is None (Qwen3-VL).

    libmtmd replaces the marker by ``<|vision_start|>`` + image tokens + ``<|vision_end|>``,
    which is what the HF chat template writes around ``<|image_pad|>``.
    """
    system = "" if system_prompt is None else f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
    return f"{system}<|im_start|>user\n{media_marker}{user_text}<|im_end|>\n<|im_start|>assistant\n"


def _utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; a ``ValueError`` naming the first lone surrogate when it has one."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text: lone surrogate {text[e.start]!r} at index {e.start} "
            "(a non-UTF-8 byte?)"
        ) from None


_USER, _MEDIA = "\x00user\x00", "\x00media\x00"  # stand-ins no template or prompt holds


def chat_parts(user_text: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[tuple[str, str]]:
    """:func:`chat_prompt` as ``(kind, text)`` parts in order: ``"template"`` (special tokens
    parsed), ``"image"`` (the image's place) and ``"user"`` (``user_text``, plain text)."""
    parts: list[tuple[str, str]] = []
    for piece in chat_prompt(_USER, _MEDIA, system_prompt).split("\x00"):
        if piece in ("user", "media"):
            parts.append(("user", user_text) if piece == "user" else ("image", ""))
        elif piece:
            parts.append(("template", piece))
    return parts


# --- logging -------------------------------------------------------------------------------
# One sink receives every llama.cpp / ggml / libmtmd log line of the process: the reasoner
# reads its load errors from it, and :func:`capture_log` (used by the exporter's quantizer)
# collects lines from it, so neither replaces the other's callback.

LOG_LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warn", 4: "error", 5: "cont"}
"""ggml_log_level values (ggml.h; the comment in llama_cpp/_logger.py predates a renumbering)."""
_WARN, _ERROR, _CONT = 3, 4, 5


class _LogSink:
    """Collects llama.cpp / libmtmd log lines; prints them to stderr when ``verbose``. Error
    lines go into the messages of the exceptions raised (one line on the command line);
    :func:`capture_log` blocks get a copy of each line.

    A Ctrl+C while llama.cpp runs is raised in the first Python code that runs next, which is
    this callback, often at its very first line; ctypes then prints and drops it ("Exception
    ignored on calling ctypes callback") and the call goes on. The callback notes it instead
    (inside: ``except``; at its first line: :func:`_unraisable_hook`, which ctypes calls), and
    :meth:`raise_interrupt` raises it once the C call has returned.
    """

    def __init__(self) -> None:
        self.verbose = False
        self.interrupted = False
        self.captures: list[list[tuple[str, str]]] = []
        self._lines: list[tuple[int, str]] = []
        self._count = 0  # lines seen so far (the list keeps the last 2000)
        self._partial = ""
        self._level = 2

    def __call__(self, level: int, text: bytes | None, _user: Any) -> None:
        try:
            self._record(level, text)
        except KeyboardInterrupt:
            self.interrupted = True
        except Exception:  # logging must never take a llama.cpp call down
            pass

    def raise_interrupt(self) -> None:
        """Raise the KeyboardInterrupt a callback caught (main thread: only it gets them)."""
        if self.interrupted and threading.current_thread() is threading.main_thread():
            self.interrupted = False
            raise KeyboardInterrupt

    def _record(self, level: int, text: bytes | None) -> None:
        s = (text or b"").decode("utf-8", errors="replace")
        if level != _CONT:  # a continuation keeps the previous line's level
            self._level = level
        self._partial += s
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._lines.append((self._level, line))
            self._count += 1
            for capture in self.captures:
                capture.append((LOG_LEVELS.get(self._level, str(self._level)), line))
        del self._lines[:-2000]
        if self.verbose:
            print(s, end="", file=sys.stderr, flush=True)

    @property
    def count(self) -> int:
        """Lines seen so far; pass it to :meth:`since` later."""
        return self._count

    def since(self, count: int) -> list[tuple[int, str]]:
        """``(level, text)`` of the lines logged after :attr:`count` was ``count``."""
        return self._lines[len(self._lines) - min(self._count - count, len(self._lines)) :]


_SINK = _LogSink()
_LOG_CALLBACKS: list[Any] = []  # ctypes callbacks must stay alive


def _unraisable_hook(unraisable: Any) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt that ctypes could not raise from the log
    callback is noted for :meth:`_LogSink.raise_interrupt`; anything else goes on to the hook
    that was installed before."""
    if unraisable.object is _SINK and issubclass(unraisable.exc_type, KeyboardInterrupt):
        _SINK.interrupted = True
        return
    _unraisable_hook.previous(unraisable)  # type: ignore[attr-defined]


def _catch_dropped_interrupts() -> None:
    """Put :func:`_unraisable_hook` in front of whatever ``sys.unraisablehook`` is now."""
    if sys.unraisablehook is not _unraisable_hook:
        _unraisable_hook.previous = sys.unraisablehook  # type: ignore[attr-defined]
        sys.unraisablehook = _unraisable_hook


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Raise, on the way out, a Ctrl+C that arrived while llama.cpp logged."""
    _catch_dropped_interrupts()
    try:
        yield
    finally:
        _SINK.raise_interrupt()


def _install_logging(verbose: bool) -> None:
    import llama_cpp
    from llama_cpp import mtmd_cpp

    _SINK.verbose = verbose
    _catch_dropped_interrupts()
    if not _LOG_CALLBACKS:
        _LOG_CALLBACKS.append(llama_cpp.llama_log_callback(_SINK))
    cb = _LOG_CALLBACKS[0]
    # set every time: llama-cpp-python installs its own callback when it is imported
    llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
    for setter in ("mtmd_log_set", "mtmd_helper_log_set"):
        fn = getattr(mtmd_cpp, setter, None)
        if fn is not None:
            fn(cb, ctypes.c_void_p(0))


@contextlib.contextmanager
def capture_log() -> Iterator[list[tuple[str, str]]]:
    """Collect llama.cpp / ggml log lines as ``(level, text)`` while the block runs.

    ``level`` is a :data:`LOG_LEVELS` name (``"warn"``, ``"error"``, ...; a ``cont`` line
    carries the level of the line it continues); ``text`` is one line without its newline.
    Nothing is printed meanwhile. The lines come from the process's one log sink, which stays
    installed afterwards (a reasoner loaded later still sees its own errors).
    """
    lines: list[tuple[str, str]] = []
    _install_logging(_SINK.verbose)
    _SINK.captures.append(lines)
    try:
        yield lines
    finally:
        _SINK.captures.remove(lines)
        if _SINK._partial:  # a last line without its newline
            lines.append((LOG_LEVELS.get(_SINK._level, str(_SINK._level)), _SINK._partial))


# --- the reasoner --------------------------------------------------------------------------


@dataclass
class GenerationStats:
    """Details of the last ``generate`` call beyond :class:`ReasonerOutput`."""

    think_tokens: int = 0
    answer_tokens: int = 0
    forced_tokens: int = 0
    think_truncated: bool = False
    n_image_tokens: int = 0
    tokens: list[int] = field(default_factory=list)
    """Every token that went into the context after the prompt (sampled and forced), in order."""
    prefix_cache_hit: bool = False


class LlamaCppReasoner:
    """:class:`segzero_edge.backends.Reasoner` on llama.cpp with a Qwen2.5-VL or Qwen3-VL GGUF
    pair."""

    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_new_tokens: int = 768,
        think_budget: int = 512,
        grammar: bool = True,
        max_objects: int = gbnf.DEFAULT_MAX_OBJECTS,
        answer_grammar: gbnf.AnswerGrammar | None = None,
        image_tokens: int | None = None,
        seed: int = 0,
        kv_cache_type: str = "f16",
        warmup: bool = True,
        verbose: bool = False,
        extra_bufts: bool | None = None,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
        use_mmap: bool | None = None,
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
        832 x 832); ``None``: the backbone's default (:data:`BACKBONES`). Images passed in must
        then be ``frame`` x ``frame`` (``sqrt(image_tokens) * patch_merge`` pixels) or at least
        multiples of ``patch_merge``.
        ``n_gpu_layers=-1`` offloads everything when llama.cpp was built with CUDA; 0 = CPU.
        ``seed`` is unused by greedy decoding (kept for API stability). ``warmup=False`` skips
        libmtmd's warm-up encode (faster start, first image slower). ``verbose`` prints the
        llama.cpp log (it is always kept in ``load_log`` for the loading phase).
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

        Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a bad option and
        :class:`ReasonerLoadError` (a ``BackendError``) when llama.cpp cannot load the files
        or this CPU lacks instructions the llama.cpp build needs.
        """
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self._lock = threading.RLock()  # one call at a time; close() waits for it
        self._ll = llama_cpp
        self._mt = mtmd_cpp
        self._model = self._ctx = self._mtmd = self._batch = None
        self._cells = self._next_pos = 0  # KV cells in use; position after the last token
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
        kv_types = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}
        if kv_cache_type not in kv_types:
            raise ValueError(
                f"kv_cache_type must be one of {sorted(kv_types)}, got {kv_cache_type!r}"
            )
        self.max_new_tokens = int(max_new_tokens)
        self.think_budget = int(think_budget)
        self.use_grammar = bool(grammar)
        self.seed = int(seed)
        if image_tokens is not None and (
            isinstance(image_tokens, bool)
            or not isinstance(image_tokens, int)
            or image_tokens < 1
            or math.isqrt(image_tokens) ** 2 != image_tokens
        ):
            raise ValueError(f"image_tokens must be a positive square number, got {image_tokens!r}")
        self.n_batch = int(n_batch)
        answer_grammar = answer_grammar or gbnf.list_answer_grammar(max_objects)
        self.grammar_text = answer_grammar.gbnf
        self._answer_cap = answer_grammar.max_chars + 8
        self.last_stats = GenerationStats()
        self._context_tokens: list[int] = []

        _install_logging(verbose)
        n_log = _SINK.count
        threads = int(n_threads or os.cpu_count() or 1)
        try:
            variant = llama_system.ensure_cpu_backend()
        except CpuVariantError as e:
            raise ReasonerLoadError(str(e)) from None
        llama_cpp.llama_backend_init()

        mismatch = llama_system.cpu_mismatch()
        if mismatch:
            raise ReasonerLoadError(mismatch)
        offload = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
        self.device_kind = "gpu" if offload else "cpu"
        """Where the layers run: "gpu" (offloaded) or "cpu"."""
        self.n_threads = threads
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = int(n_gpu_layers)
        use_extra, extra_why = llama_system.decide_extra_bufts(extra_bufts)
        mparams.use_extra_bufts = use_extra
        if use_mmap is None and use_extra and not offload:
            use_mmap = False  # else llama.cpp's own default (AUTO)
        if use_mmap is not None:
            mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
            mparams.load_mode = mode
        self._model = llama_cpp.llama_model_load_from_file(str(paths["model"]).encode(), mparams)
        _SINK.raise_interrupt()
        if not self._model:
            raise ReasonerLoadError(
                f"llama.cpp could not load {paths['model']}: {self._errors(n_log)}"
            )
        self.info: dict[str, Any] = {
            "use_extra_bufts": use_extra,
            "use_extra_bufts_reason": extra_why,
            "cpu_variant": variant.chosen.name if variant else None,
            "cpu_features": llama_system.cpu_features(),
            "model_buffers_mib": llama_system.model_buffer_types(
                [line for _, line in _SINK.since(n_log)]
            ),
        }
        self.arch = self._meta("general.architecture")
        """The text GGUF's architecture (``qwen2vl``, ``qwen3vl``)."""
        if self.arch not in BACKBONES:
            self._free()
            raise ReasonerLoadError(
                f"{paths['model']} is a {self.arch!r} model; the reasoner serves "
                f"{', '.join(BACKBONES)} (Qwen2.5-VL, Qwen3-VL)"
            )
        backbone = BACKBONES[self.arch]
        self.system_prompt = backbone.system_prompt
        self.patch_merge = backbone.patch_merge
        self.image_tokens = int(image_tokens or backbone.default_image_tokens)
        self.frame = math.isqrt(self.image_tokens) * self.patch_merge
        """Side (pixels) of the square image that gives exactly ``image_tokens`` tokens."""
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = int(n_ctx)
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        cparams.type_k = cparams.type_v = kv_types[kv_cache_type]
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        _SINK.raise_interrupt()
        if not self._ctx:
            self._free()
            raise ReasonerLoadError(f"llama.cpp could not create a context: {self._errors(n_log)}")
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))

        tparams = mtmd_cpp.mtmd_context_params_default()
        tparams.use_gpu = n_gpu_layers != 0
        tparams.n_threads = threads
        tparams.print_timings = False
        tparams.warmup = bool(warmup)
        tparams.image_min_tokens = tparams.image_max_tokens = self.image_tokens
        self._mtmd = mtmd_cpp.mtmd_init_from_file(
            str(paths["mmproj"]).encode(), self._model, tparams
        )
        _SINK.raise_interrupt()
        if not self._mtmd:
            self._free()
            raise ReasonerLoadError(
                f"libmtmd could not load {paths['mmproj']}: {self._errors(n_log)}"
            )
        if not mtmd_cpp.mtmd_support_vision(self._mtmd):
            self._free()
            raise ReasonerLoadError(f"{paths['mmproj']} has no vision encoder")
        self._marker = (mtmd_cpp.mtmd_default_marker() or b"<__media__>").decode()
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.load_log = _SINK.since(n_log)

    # -- small helpers ----------------------------------------------------------------------

    def _meta(self, key: str) -> str:
        """A string metadata value of the text GGUF ('' when absent)."""
        buf = ctypes.create_string_buffer(256)
        n = self._ll.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else ""

    @staticmethod
    def _errors(since: int) -> str:
        msgs = [s for lvl, s in _SINK.since(since) if lvl in (_WARN, _ERROR) and s.strip()]
        return "; ".join(msgs[-5:]) or "no details in the log"

    @property
    def load_warnings(self) -> list[str]:
        """Warning and error lines llama.cpp / mtmd logged while loading this model."""
        return [s for lvl, s in self.load_log if lvl in (_WARN, _ERROR) and s.strip()]

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Tokens of ``text``, no BOS added; with ``special`` the text of special tokens (e.g.
        ``<|im_end|>``) becomes those tokens, else it is tokenized as plain text."""
        data = _utf8(text, "text")
        buf = (self._ll.llama_token * (len(data) + 8))()
        n = self._ll.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, special)
        if n < 0:
            raise RuntimeError(f"tokenization failed for {text[:40]!r}")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def _is_eog(self, token: int) -> bool:
        return bool(self._ll.llama_vocab_is_eog(self._vocab, token))

    def _clear(self) -> None:
        self._ll.llama_memory_clear(self._ll.llama_get_memory(self._ctx), True)
        self._cells = self._next_pos = 0

    def _rollback(self, pos: int) -> None:
        """Drop the text tokens at positions ``pos...`` (one KV cell each)."""
        mem = self._ll.llama_get_memory(self._ctx)
        self._ll.llama_memory_seq_rm(mem, 0, pos, -1)
        self._cells -= self._next_pos - pos
        self._next_pos = pos

    @property
    def free_cells(self) -> int:
        """KV cells still free in the context (``n_ctx`` minus the cells in use)."""
        return self.n_ctx - self._cells

    def _decode(self, tokens: list[int], pos: int, logits: str = "last") -> np.ndarray | None:
        """Decode ``tokens`` at positions ``pos...``; ``logits``: "none", "last" or "all"."""
        if len(tokens) > self.free_cells:  # the budgets keep this from happening
            raise RuntimeError(
                f"KV cache full: {len(tokens)} tokens, {self.free_cells} of n_ctx "
                f"{self.n_ctx} cells free"
            )
        out: list[np.ndarray] = []
        b = self._batch
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            last_chunk = start + self.n_batch >= len(tokens)
            b.n_tokens = len(part)
            for i, t in enumerate(part):
                b.token[i] = t
                b.pos[i] = pos + start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                want = logits == "all" or (logits == "last" and last_chunk and i == len(part) - 1)
                b.logits[i] = 1 if want else 0
            n_log = _SINK.count
            rc = self._ll.llama_decode(self._ctx, b)
            _SINK.raise_interrupt()
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}: {self._errors(n_log)}")
            self._cells += len(part)
            self._next_pos = pos + start + len(part)
            if logits == "all":
                for i in range(len(part)):
                    ptr = self._ll.llama_get_logits_ith(self._ctx, i)
                    out.append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())
        if logits == "all":
            return np.stack(out) if out else np.zeros((0, self.n_vocab), np.float32)
        return None

    def _bitmap(self, image: np.ndarray) -> Any:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError("image must be an H x W x 3 uint8 numpy array")
        h, w, c = image.shape
        if c != 3 or h % self.patch_merge or w % self.patch_merge:
            raise ValueError(
                f"image must be H x W x 3 with H, W multiples of {self.patch_merge} "
                f"(the reasoner input is {self.frame} x {self.frame}); got {image.shape}"
            )
        data = np.ascontiguousarray(image).tobytes()
        bmp = self._mt.mtmd_bitmap_init(w, h, (ctypes.c_ubyte * len(data)).from_buffer_copy(data))
        if not bmp:
            raise RuntimeError("mtmd_bitmap_init failed")
        return bmp

    def _tokenize_prompt(self, bmp: Any, prompt: str) -> Any:
        """The chat text around ``prompt`` as mtmd chunks (the caller frees them).

        Each template part is tokenized with special tokens parsed, ``prompt`` as plain text
        (``mtmd_tokenize_from_parts``: no media markers are looked for in any part), so the
        user's text can neither inject control tokens nor a second image. For text without
        special-token strings the ids equal tokenizing the whole chat text at once.
        """
        mt = self._mt
        keep: list[Any] = []  # the ctypes objects the parts point into, alive until the call
        parts: list[Any] = []
        for kind, text in chat_parts(prompt, self.system_prompt):
            part = mt.mtmd_input_part()
            if kind == "image":
                part.bitmap = bmp
            else:
                raw = _utf8(text, "prompt")
                t = mt.mtmd_input_text()
                t.text, t.text_len = raw, len(raw)
                t.add_special, t.parse_special = False, kind == "template"
                keep.append((t, raw))
                part.text = ctypes.pointer(t)
            keep.append(part)
            parts.append(ctypes.pointer(part))
        arr = (ctypes.POINTER(mt.mtmd_input_part) * len(parts))(*parts)
        chunks = mt.mtmd_input_chunks_init()
        rc = mt.mtmd_tokenize_from_parts(self._mtmd, chunks, arr, len(parts), False)
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"mtmd_tokenize_from_parts failed with code {rc}")
        return chunks

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Token ids of the chat text of ``prompt`` with one image, in order; each image token
        is ``-1``. Its length is the number of KV cells the prompt takes."""
        with self._lock, _interruptible():
            self._require_open()
            mt = self._mt
            bmp = self._bitmap(np.zeros((self.frame, self.frame, 3), np.uint8))
            try:
                chunks = self._tokenize_prompt(bmp, prompt)
            finally:
                mt.mtmd_bitmap_free(bmp)
            try:
                return self._chunk_ids(chunks)
            finally:
                mt.mtmd_input_chunks_free(chunks)

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

    def _chunk_ids(self, chunks: Any) -> list[int]:
        """Token ids of libmtmd's input chunks in order; -1 for each image token."""
        mt = self._mt
        ids: list[int] = []
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(chunk) == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                ids += [int(ptr[j]) for j in range(n.value)]
            else:
                ids += [-1] * int(mt.mtmd_input_chunk_get_n_tokens(chunk))
        return ids

    def _chunk_cells(self, chunks: Any) -> int:
        mt = self._mt
        n = mt.mtmd_input_chunks_size(chunks)
        return sum(
            int(mt.mtmd_input_chunk_get_n_tokens(mt.mtmd_input_chunks_get(chunks, i)))
            for i in range(n)
        )

    def _prefill(
        self,
        image: np.ndarray,
        prompt: str,
        *,
        text_logits: bool = False,
        frame_key: str | None = None,
    ) -> dict[str, Any]:
        """Evaluate system + image + prompt; returns positions, token counts and timings.

        The prefix is every chunk up to the image. With ``frame_key`` and the prefix cache on, a
        frame whose prefix is cached is restored and only the chunks after the image are
        evaluated (``prefix_cache_hit``); otherwise the context starts empty and the state after
        the prefix is stored under ``frame_key``. With ``text_logits`` the logits of every text
        token after the image are returned. Raises ``ValueError`` before decoding anything when
        the prompt leaves no KV cell free.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        mt = self._mt
        bmp = self._bitmap(image)
        try:
            chunks = self._tokenize_prompt(bmp, prompt)
        finally:
            mt.mtmd_bitmap_free(bmp)
        res: dict[str, Any] = {
            "vision_encode": 0.0,
            "prefill": 0.0,
            "n_prompt_tokens": 0,
            "prefix_cache_hit": False,
        }
        try:
            self._clear()  # a refused prompt leaves an empty context, as a finished call does
            self._require_room(self._chunk_cells(chunks))
            parts: list[tuple[Any, list[int] | None, int]] = []  # (chunk, text tokens, n_tok)
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                kind = mt.mtmd_input_chunk_get_type(chunk)
                n_tok = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
                res["n_prompt_tokens"] += n_tok
                if kind == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    toks = [int(ptr[j]) for j in range(n.value)]
                    parts.append((chunk, toks, n_tok))
                    res["last_tokens"] = toks
                elif kind == mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    parts.append((chunk, None, n_tok))
                    res["n_image_tokens"] = n_tok
                else:
                    raise RuntimeError(f"unexpected mtmd chunk type {kind}")
            split = max((i + 1 for i, p in enumerate(parts) if p[1] is None), default=0)
            signature: Signature = tuple(
                (-1, n_tok) if toks is None else tuple(toks) for _, toks, n_tok in parts[:split]
            )
            cache = self.prefix_cache if frame_key and split and self.prefix_cache.enabled else None
            entry = cache.get(frame_key, signature) if cache and frame_key else None
            t0 = time.perf_counter()
            n_past = 0
            if entry is not None:
                n_past = self._restore_prefix(entry)
                if n_past < 0:  # llama.cpp refused the state: forget it, evaluate everything
                    cache.discard(frame_key)  # type: ignore[union-attr,arg-type]
                    entry, n_past = None, 0
                    self._clear()
            res["prefill"] += time.perf_counter() - t0
            res["prefix_cache_hit"] = entry is not None
            seen_image = entry is not None
            text_after: list[np.ndarray] = []
            for i in range(split if entry is not None else 0, len(parts)):
                chunk, toks, n_tok = parts[i]
                if toks is not None:
                    t0 = time.perf_counter()
                    mode = "all" if (text_logits and seen_image) else "last"
                    lg = self._decode(toks, n_past, mode)
                    res["prefill"] += time.perf_counter() - t0
                    if lg is not None:
                        text_after.append(lg)
                    n_past += len(toks)
                else:
                    n_past = self._decode_image(chunk, n_tok, n_past, res, text_logits)
                    seen_image = True
                if cache is not None and frame_key and entry is None and i == split - 1:
                    t0 = time.perf_counter()
                    cache.put(frame_key, self._save_prefix(signature, n_past))
                    res["prefill"] += time.perf_counter() - t0
        finally:
            mt.mtmd_input_chunks_free(chunks)
        res["n_past"] = n_past
        if text_logits:
            res["text_logits"] = np.concatenate(text_after) if text_after else None
        return res

    def _decode_image(
        self, chunk: Any, n_tok: int, n_past: int, res: dict[str, Any], keep_embd: bool
    ) -> int:
        """Encode an image chunk and decode its embeddings at ``n_past``; the next position.

        libmtmd gives the image tokens M-RoPE positions (t, y, x) and returns the next text
        position, which is ``n_past + max(nx, ny)``, not ``n_past + n_tok``.
        """
        mt = self._mt
        t0 = time.perf_counter()
        rc = mt.mtmd_encode_chunk(self._mtmd, chunk)
        _SINK.raise_interrupt()
        if rc != 0:
            raise RuntimeError("mtmd_encode_chunk failed")
        res["vision_encode"] += time.perf_counter() - t0
        embd = mt.mtmd_get_output_embd(self._mtmd)
        if keep_embd:
            n_embd = int(self._ll.llama_model_n_embd_inp(self._model))
            flat = np.ctypeslib.as_array(embd, shape=(n_tok * n_embd,))
            res["image_embd"] = flat.reshape(n_tok, n_embd).copy()
        t0 = time.perf_counter()
        new_past = self._ll.llama_pos(0)
        rc = mt.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self._ctx,
            chunk,
            embd,
            n_past,
            0,
            self.n_batch,
            ctypes.byref(new_past),
            mt.mtmd_helper_post_decode_callback(),
            None,
        )
        _SINK.raise_interrupt()
        if rc != 0:
            raise RuntimeError(f"decoding the image embeddings failed ({rc})")
        res["prefill"] += time.perf_counter() - t0
        # M-RoPE: n_tok cells, but the position moves by far less (30 for 900)
        self._cells += n_tok
        self._next_pos = int(new_past.value)
        return self._next_pos

    def _save_prefix(self, signature: Signature, n_past: int) -> PrefixState:
        """Sequence 0's KV state (cells, positions incl. M-RoPE, K and V) into host memory."""
        ll = self._ll
        size = int(ll.llama_state_seq_get_size(self._ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        n = int(ll.llama_state_seq_get_data(self._ctx, buf, size, 0))
        if n == 0:
            raise RuntimeError("llama_state_seq_get_data wrote nothing")
        mem = ll.llama_get_memory(self._ctx)
        pos_max = int(ll.llama_memory_seq_pos_max(mem, 0))
        return PrefixState(signature, buf, n, self._cells, n_past, pos_max)

    def _restore_prefix(self, entry: PrefixState) -> int:
        """Load ``entry`` into the (empty) sequence 0; the next position, or -1 on failure."""
        ll = self._ll
        n = int(ll.llama_state_seq_set_data(self._ctx, entry.state, entry.nbytes, 0))
        mem = ll.llama_get_memory(self._ctx)
        if n != entry.nbytes or int(ll.llama_memory_seq_pos_max(mem, 0)) != entry.pos_max:
            return -1
        self._cells, self._next_pos = entry.n_tokens, entry.n_past
        return entry.n_past

    # -- fidelity helpers (used by tests and export reports) --------------------------------

    def prompt_logits(self, image: np.ndarray, prompt: str) -> dict[str, Any]:
        """Prefill only; returns ``text_logits`` [n_text_after_image, vocab] (float32),
        ``image_embd`` [n_image_tokens, n_embd], ``n_image_tokens`` and ``n_prompt_tokens``."""
        with self._lock, _interruptible():
            self._require_open()
            return self._prefill(image, prompt, text_logits=True)

    def _require_open(self) -> None:
        if self._ctx is None:
            raise RuntimeError("this LlamaCppReasoner has been closed")

    def _new_grammar(self) -> Any:
        g = self._ll.llama_sampler_init_grammar(self._vocab, self.grammar_text.encode(), b"root")
        if not g:
            raise RuntimeError("llama.cpp rejected the answer grammar")
        return g

    def _grammar_walk(self, smpl: Any, tokens: list[int]) -> bool:
        """Accept ``tokens`` into sampler ``smpl`` while the grammar allows each; False at the
        first token it would mask (that token and the rest are not accepted)."""
        ll = self._ll
        cand = (ll.llama_token_data * 1)()
        for tok in tokens:
            cand[0].id, cand[0].logit, cand[0].p = tok, 0.0, 0.0
            arr = ll.llama_token_data_array(cand, 1, -1, False)
            ll.llama_sampler_apply(smpl, ctypes.byref(arr))
            if arr.size != 1 or not np.isfinite(cand[0].logit):
                return False
            ll.llama_sampler_accept(smpl, tok)
        return True

    def answer_allowed(self, text: str) -> bool:
        """Whether the answer grammar lets greedy decoding emit ``text`` unchanged.

        The grammar only masks tokens and works on their text, so a model whose greedy answer
        is ``text`` (in any tokenization) gives the same answer with the grammar on exactly
        when this is True.
        """
        with self._lock, _interruptible():
            self._require_open()
            g = self._new_grammar()
            try:
                return self._grammar_walk(g, self.tokenize(text))
            finally:
                self._ll.llama_sampler_free(g)

    # -- generation -------------------------------------------------------------------------

    def _sampler(self, with_grammar: bool) -> Any:
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if with_grammar:
            g = ll.llama_sampler_init_grammar(self._vocab, self.grammar_text.encode(), b"root")
            if not g:
                ll.llama_sampler_free(chain)
                raise RuntimeError("llama.cpp rejected the answer grammar")
            ll.llama_sampler_chain_add(chain, g)
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        return chain

    def _run(
        self, chain: Any, n_past: int, budget: int, stops: tuple[bytes, ...], out: bytearray
    ) -> tuple[int, list[tuple[int, int]], str]:
        """Greedy loop from the logits already in the context.

        Returns (n_past, [(token, byte offset in ``out`` where it starts)], reason) where
        reason is "eog", "stop" or "budget". The last sampled token is decoded unless EOG.
        """
        toks: list[tuple[int, int]] = []
        while len(toks) < budget:
            tok = int(self._ll.llama_sampler_sample(chain, self._ctx, -1))
            if self._is_eog(tok):
                return n_past, toks, "eog"
            toks.append((tok, len(out)))
            out += self.piece(tok)
            self._decode([tok], n_past)
            self._context_tokens.append(tok)
            n_past += 1
            tail = bytes(out[toks[-1][1] - 16 :]) if toks[-1][1] >= 16 else bytes(out)
            if any(s in tail for s in stops):
                return n_past, toks, "stop"
        return n_past, toks, "budget"

    def _force(self, text: str, n_past: int, out: bytearray) -> tuple[int, int] | None:
        """Decode ``text`` as if generated; ``None`` (nothing decoded) when the context is full."""
        toks = self.tokenize(text)
        if len(toks) > self.free_cells:
            return None
        self._decode(toks, n_past)
        self._context_tokens.extend(toks)
        out += text.encode()
        return n_past + len(toks), len(toks)

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        """Greedy generation for one image + prompt (see the module docstring).

        ``image``: ``frame`` x ``frame`` x 3 uint8 RGB (840 for Qwen2.5-VL). ``frame_key``
        names the frame's content for the prefix cache (the pipeline passes
        :func:`segzero_edge.image.frame_key` of the original frame); without it the key is
        computed from ``image``. ``timings`` holds seconds for ``vision_encode``, ``prefill``
        (including a prefix restore), ``decode``, and ``reasoner_cache_hit`` (1.0 when the
        frame's prefix came from the cache, else 0.0).

        Raises ``ValueError`` (before decoding) for a prompt that is not text or does not fit
        ``n_ctx``, ``RuntimeError`` after :meth:`close`; a generation that fills the context
        returns ``truncated=True``.
        """
        with self._lock, _interruptible():
            self._require_open()
            return self._generate(image, prompt, frame_key)

    def _generate(self, image: np.ndarray, prompt: str, frame_key: str | None) -> ReasonerOutput:
        if frame_key is None and self.prefix_cache.enabled and isinstance(image, np.ndarray):
            frame_key = "reasoner-input:" + content_key(image)
        self._context_tokens = []
        pre = self._prefill(image, prompt, frame_key=frame_key)
        n_past, n_prompt = pre["n_past"], pre["n_prompt_tokens"]
        stats = GenerationStats(
            n_image_tokens=pre.get("n_image_tokens", 0),
            tokens=self._context_tokens,
            prefix_cache_hit=pre["prefix_cache_hit"],
        )
        room = self.free_cells
        out = bytearray()
        t0 = time.perf_counter()
        truncated = False
        if not self.use_grammar:
            chain = self._sampler(False)
            try:
                budget = min(self.max_new_tokens, room)
                stop = (gbnf.ANSWER_CLOSE.encode(),)
                n_past, toks, why = self._run(chain, n_past, budget, stop, out)
            finally:
                self._ll.llama_sampler_free(chain)
            stats.think_tokens = len(toks)
            truncated = why == "budget"
            n_gen = len(toks)
        else:
            n_past, n_gen, truncated = self._generate_constrained(n_past, room, out, stats)
        decode_s = time.perf_counter() - t0
        self.last_stats = stats
        return ReasonerOutput(
            text=out.decode("utf-8", errors="replace"),
            truncated=truncated,
            n_prompt_tokens=n_prompt,
            n_generated_tokens=n_gen,
            timings={
                "vision_encode": pre["vision_encode"],
                "prefill": pre["prefill"],
                "decode": decode_s,
                "reasoner_cache_hit": 1.0 if pre["prefix_cache_hit"] else 0.0,
            },
        )

    def _generate_constrained(
        self, n_past: int, room: int, out: bytearray, stats: GenerationStats
    ) -> tuple[int, int, bool]:
        """Think (free, budgeted) -> ``</think>`` -> grammar-constrained answer.

        The model's own tokens are kept wherever possible: when ``</think>`` ends inside a
        token whose remaining text (e.g. ``"<"`` of ``"><"``) can start an answer, that text
        is fed to the grammar instead of re-tokenizing. Only when the rest cannot start an
        answer, or the model opened ``<answer>`` without closing ``</think>``, is the last
        token replaced by forced text.
        """
        ll = self._ll
        close = gbnf.THINK_CLOSE.encode()
        opened = gbnf.ANSWER_OPEN.encode()
        budget = max(0, min(self.think_budget, self.max_new_tokens, room - self._answer_cap - 16))
        chain = self._sampler(False)
        try:
            n_past, toks, why = self._run(chain, n_past, budget, (close, opened), out)
        finally:
            ll.llama_sampler_free(chain)
        stats.think_tokens = len(toks)
        stats.think_truncated = why == "budget"
        text = bytes(out)
        answer_prefix: list[int] = []
        cut = -1
        if close in text:
            cut = text.index(close) + len(close)
            rest = text[cut:].decode("utf-8", errors="replace")
            if rest:
                answer_prefix = self.tokenize(rest)
                check = self._new_grammar()
                try:
                    if self._grammar_walk(check, answer_prefix):
                        cut = len(text)  # keep the model's token; the grammar starts mid-way
                    else:
                        answer_prefix = []
                finally:
                    ll.llama_sampler_free(check)
        elif opened in text:
            cut = text.index(opened)  # answer started without </think>: close thinking first
        forced = 0
        replaced = cut >= 0 and cut != len(text)
        n_think = stats.think_tokens - (1 if replaced else 0)
        if replaced:
            # drop the last token and re-feed its text up to the cut
            last_tok_start = toks[-1][1]
            n_past -= 1
            self._rollback(n_past)
            self._context_tokens.pop()
            keep = text[last_tok_start:cut]
            del out[last_tok_start:]
            if keep:
                done = self._force(keep.decode("utf-8", errors="replace"), n_past, out)
                if done is None:  # the context is full: no room left for an answer
                    return n_past, n_think, True
                n_past, k = done
                forced += k
        if close not in bytes(out):
            done = self._force(gbnf.THINK_CLOSE, n_past, out)
            if done is None:
                stats.forced_tokens = forced
                return n_past, n_think + forced, True
            n_past, k = done
            forced += k
        # the answer, under the grammar; the grammar's language is finite so it terminates
        chain = self._sampler(True)
        try:
            for tok in answer_prefix:
                ll.llama_sampler_accept(chain, tok)
            cap = min(self._answer_cap, self.free_cells)
            n_past, atoks, why = self._run(chain, n_past, cap, (gbnf.ANSWER_CLOSE.encode(),), out)
        finally:
            ll.llama_sampler_free(chain)
        stats.answer_tokens = len(atoks)
        stats.forced_tokens = forced
        return n_past, n_think + forced + len(atoks), stats.think_truncated or why == "budget"

    @property
    def caches_prefix(self) -> bool:
        """Whether a frame's image prefix is kept for later prompts (``prefix_cache_mb`` > 0)."""
        return self.prefix_cache.enabled

    def close(self) -> None:
        """Free the llama.cpp objects (idempotent); waits for a call in progress."""
        with self._lock, _interruptible():
            self._free()

    def _free(self) -> None:
        ll, mt = self._ll, self._mt
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._mtmd:
            mt.mtmd_free(self._mtmd)
        self._mtmd = None
        if self._ctx:
            ll.llama_free(self._ctx)
        self._ctx = None
        if self._model:
            ll.llama_model_free(self._model)
        self._model = None

    def __enter__(self) -> LlamaCppReasoner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception), self._lock:
            self._free()
