"""Qwen2.5-VL reasoner on llama.cpp (llama-cpp-python's C API + libmtmd for the image).

One user turn (image, then the prompt) under Qwen2.5-VL's chat template with the default
system prompt, greedy decoding and a token budget. The 840 x 840 image gives exactly 900
image tokens (60 x 60 patches merged 2 x 2): the mtmd context is created with
``image_min_tokens = image_max_tokens = 900`` so llama.cpp neither up- nor down-scales it.

With ``grammar=True`` the generation has two phases: the thinking text is free, limited to
``think_budget`` tokens and closed with ``</think>`` (forced when the model does not write it);
the answer is then sampled under the GBNF of :mod:`segzero_edge.reasoner.grammar`, so it
always parses. ``grammar=False`` is plain greedy decoding up to ``max_new_tokens``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ReasonerOutput
from ..layout import IMAGE_TOKENS, PATCH_MERGE, REASONER_SIZE
from . import grammar as gbnf
from . import llama_system

SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_IMAGE_TOKENS = IMAGE_TOKENS  # 900 for 840 x 840


class ReasonerLoadError(RuntimeError):
    """The GGUF files could not be loaded by llama.cpp."""


def chat_prompt(user_text: str, media_marker: str) -> str:
    """Qwen2.5-VL chat text for one user turn: image (``media_marker``) then ``user_text``.

    libmtmd replaces the marker by ``<|vision_start|>`` + image tokens + ``<|vision_end|>``,
    which is what the HF chat template writes around ``<|image_pad|>``.
    """
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{media_marker}{user_text}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


# --- logging -------------------------------------------------------------------------------
# One sink receives every llama.cpp / ggml / libmtmd log line of the process: the reasoner
# reads its load errors from it, and :func:`capture_log` (used by the exporter's quantizer)
# collects lines from it, so neither replaces the other's callback.

LOG_LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warn", 4: "error", 5: "cont"}
"""ggml_log_level values (ggml.h; the comment in llama_cpp/_logger.py predates a renumbering)."""
_WARN, _ERROR, _CONT = 3, 4, 5


@dataclass
class _LogSink:
    """Collects llama.cpp / mtmd log lines; prints them when verbose (errors always, unless a
    :func:`capture_log` block is collecting them)."""

    verbose: bool = False
    lines: list[tuple[int, str]] = field(default_factory=list)
    captures: list[list[tuple[str, str]]] = field(default_factory=list)
    _partial: str = ""
    _level: int = 2

    def __call__(self, level: int, text: bytes | None, _user: Any) -> None:
        s = (text or b"").decode("utf-8", errors="replace")
        if level != _CONT:  # a continuation keeps the previous line's level
            self._level = level
        if self.verbose or (self._level == _ERROR and not self.captures):
            print(s, end="", file=sys.stderr, flush=True)
        self._partial += s
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append((self._level, line))
            for capture in self.captures:
                capture.append((LOG_LEVELS.get(self._level, str(self._level)), line))
        del self.lines[:-2000]


_SINK = _LogSink()
_LOG_CALLBACKS: list[Any] = []  # ctypes callbacks must stay alive


def _install_logging(verbose: bool) -> None:
    import llama_cpp
    from llama_cpp import mtmd_cpp

    _SINK.verbose = verbose
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


class LlamaCppReasoner:
    """:class:`segzero_edge.backends.Reasoner` on llama.cpp with a Qwen2.5-VL GGUF pair."""

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
        image_tokens: int = DEFAULT_IMAGE_TOKENS,
        seed: int = 0,
        kv_cache_type: str = "f16",
        warmup: bool = True,
        verbose: bool = False,
        ignore_eos: bool = False,
        extra_bufts: bool | None = None,
    ) -> None:
        """Load ``model_path`` (text GGUF, any quantization) and ``mmproj_path`` (vision GGUF).

        ``max_new_tokens`` caps plain greedy generation (``grammar=False``) and the thinking
        part with the grammar; ``think_budget`` caps the thinking part with the grammar (the
        grammar-constrained answer has its own bound, ``grammar.max_answer_chars``).
        ``image_tokens`` pins libmtmd's min = max image tokens (900 for 840 x 840).
        ``n_gpu_layers=-1`` offloads everything when llama.cpp was built with CUDA; 0 = CPU.
        ``seed`` is unused by greedy decoding (kept for API stability). ``warmup=False`` skips
        libmtmd's warm-up encode (faster start, first image slower). ``verbose`` prints the
        llama.cpp log (it is always kept in ``load_log`` for the loading phase).
        ``ignore_eos`` (benchmarks only, needs ``grammar=False``) decodes exactly
        ``max_new_tokens`` tokens, past end-of-generation tokens and stop strings.
        ``extra_bufts`` sets ``llama_model_params.use_extra_bufts`` (weights repacked into
        llama.cpp's CPU_REPACK / AMX buffer types); ``None`` decides as
        :func:`segzero_edge.reasoner.llama_system.decide_extra_bufts` does: off where llama.cpp
        reports AMX (its AMX kernels crash on some CPUs), on elsewhere,
        ``$SEGZERO_LLAMA_EXTRA_BUFTS=1/0`` forces. ``info`` records the choice, the reason,
        llama.cpp's CPU features and the buffer types the weights went to.
        """
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self._ll = llama_cpp
        self._mt = mtmd_cpp
        self._model = self._ctx = self._mtmd = self._batch = None
        paths = {"model": Path(model_path), "mmproj": Path(mmproj_path)}
        for what, p in paths.items():
            if not p.is_file():
                raise FileNotFoundError(f"reasoner {what} file not found: {p}")
        if max_new_tokens < 1 or think_budget < 0:
            raise ValueError("max_new_tokens must be >= 1 and think_budget >= 0")
        if ignore_eos and grammar:
            raise ValueError("ignore_eos needs grammar=False (the grammar must end the answer)")
        self.ignore_eos = bool(ignore_eos)
        kv_types = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}
        if kv_cache_type not in kv_types:
            raise ValueError(
                f"kv_cache_type must be one of {sorted(kv_types)}, got {kv_cache_type!r}"
            )
        self.max_new_tokens = int(max_new_tokens)
        self.think_budget = int(think_budget)
        self.use_grammar = bool(grammar)
        self.seed = int(seed)
        self.image_tokens = int(image_tokens)
        self.n_batch = int(n_batch)
        self.grammar_text = gbnf.answer_grammar(max_objects)
        self._answer_cap = gbnf.max_answer_chars(max_objects) + 8
        self.last_stats = GenerationStats()

        _install_logging(verbose)
        n_log = len(_SINK.lines)
        threads = int(n_threads or os.cpu_count() or 1)
        llama_cpp.llama_backend_init()

        mismatch = llama_system.cpu_mismatch()
        if mismatch:
            raise ReasonerLoadError(mismatch)
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = int(n_gpu_layers)
        use_extra, extra_why = llama_system.decide_extra_bufts(extra_bufts)
        mparams.use_extra_bufts = use_extra
        self._model = llama_cpp.llama_model_load_from_file(str(paths["model"]).encode(), mparams)
        if not self._model:
            raise ReasonerLoadError(
                f"llama.cpp could not load {paths['model']}: {self._errors(n_log)}"
            )
        self.info: dict[str, Any] = {
            "use_extra_bufts": use_extra,
            "use_extra_bufts_reason": extra_why,
            "cpu_features": llama_system.cpu_features(),
            "model_buffers_mib": llama_system.model_buffer_types(
                [line for _, line in _SINK.lines[n_log:]]
            ),
        }
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = int(n_ctx)
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        cparams.type_k = cparams.type_v = kv_types[kv_cache_type]
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            self.close()
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
        if not self._mtmd:
            self.close()
            raise ReasonerLoadError(
                f"libmtmd could not load {paths['mmproj']}: {self._errors(n_log)}"
            )
        if not mtmd_cpp.mtmd_support_vision(self._mtmd):
            self.close()
            raise ReasonerLoadError(f"{paths['mmproj']} has no vision encoder")
        self._marker = (mtmd_cpp.mtmd_default_marker() or b"<__media__>").decode()
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.load_log = [(lvl, s) for lvl, s in _SINK.lines[n_log:]]

    # -- small helpers ----------------------------------------------------------------------

    @staticmethod
    def _errors(since: int) -> str:
        msgs = [s for lvl, s in _SINK.lines[since:] if lvl in (_WARN, _ERROR) and s.strip()]
        return "; ".join(msgs[-5:]) or "no details in the log"

    @property
    def load_warnings(self) -> list[str]:
        """Warning and error lines llama.cpp / mtmd logged while loading this model."""
        return [s for lvl, s in self.load_log if lvl in (_WARN, _ERROR) and s.strip()]

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` (special tokens parsed, no BOS added)."""
        data = text.encode("utf-8")
        buf = (self._ll.llama_token * (len(data) + 8))()
        n = self._ll.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, True)
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

    def _rollback(self, pos: int) -> None:
        mem = self._ll.llama_get_memory(self._ctx)
        self._ll.llama_memory_seq_rm(mem, 0, pos, -1)

    def _decode(self, tokens: list[int], pos: int, logits: str = "last") -> np.ndarray | None:
        """Decode ``tokens`` at positions ``pos...``; ``logits``: "none", "last" or "all"."""
        if pos + len(tokens) > self.n_ctx:
            raise ValueError(f"context full: {pos + len(tokens)} tokens > n_ctx {self.n_ctx}")
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
            rc = self._ll.llama_decode(self._ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
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
        if c != 3 or h % PATCH_MERGE or w % PATCH_MERGE:
            raise ValueError(
                f"image must be H x W x 3 with H, W multiples of {PATCH_MERGE} "
                f"(the reasoner input is {REASONER_SIZE} x {REASONER_SIZE}); got {image.shape}"
            )
        data = np.ascontiguousarray(image).tobytes()
        bmp = self._mt.mtmd_bitmap_init(w, h, (ctypes.c_ubyte * len(data)).from_buffer_copy(data))
        if not bmp:
            raise RuntimeError("mtmd_bitmap_init failed")
        return bmp

    def _prefill(
        self, image: np.ndarray, prompt: str, *, text_logits: bool = False
    ) -> dict[str, Any]:
        """Clear the cache and evaluate system + image + prompt. Returns positions and timings.

        With ``text_logits`` the logits of every text token after the image are returned.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        mt = self._mt
        self._clear()
        bmp = self._bitmap(image)
        chunks = mt.mtmd_input_chunks_init()
        res: dict[str, Any] = {"vision_encode": 0.0, "prefill": 0.0, "n_prompt_tokens": 0}
        try:
            text = mt.mtmd_input_text()
            raw = chat_prompt(prompt, self._marker).encode("utf-8")
            text.text, text.text_len = raw, len(raw)
            text.add_special, text.parse_special = False, True
            arr = (mt.mtmd_bitmap_p_ctypes * 1)(bmp)
            rc = mt.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(text), arr, 1)
            if rc != 0:
                raise RuntimeError(f"mtmd_tokenize failed with code {rc}")
            n_past = 0
            seen_image = False
            text_after: list[np.ndarray] = []
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                kind = mt.mtmd_input_chunk_get_type(chunk)
                n_tok = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
                res["n_prompt_tokens"] += n_tok
                if kind == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    toks = [int(ptr[j]) for j in range(n.value)]
                    t0 = time.perf_counter()
                    mode = "all" if (text_logits and seen_image) else "last"
                    lg = self._decode(toks, n_past, mode)
                    res["prefill"] += time.perf_counter() - t0
                    if lg is not None:
                        text_after.append(lg)
                    n_past += len(toks)
                    res["last_tokens"] = toks
                elif kind == mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    if n_past + n_tok > self.n_ctx:
                        raise ValueError(f"context full: image needs {n_tok} more tokens")
                    t0 = time.perf_counter()
                    if mt.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                        raise RuntimeError("mtmd_encode_chunk failed")
                    res["vision_encode"] += time.perf_counter() - t0
                    embd = mt.mtmd_get_output_embd(self._mtmd)
                    res["n_image_tokens"] = n_tok
                    if text_logits:
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
                    if rc != 0:
                        raise RuntimeError(f"decoding the image embeddings failed ({rc})")
                    res["prefill"] += time.perf_counter() - t0
                    n_past = int(new_past.value)
                    seen_image = True
                else:
                    raise RuntimeError(f"unexpected mtmd chunk type {kind}")
        finally:
            mt.mtmd_input_chunks_free(chunks)
            mt.mtmd_bitmap_free(bmp)
        if n_past + 1 > self.n_ctx:
            raise ValueError(f"prompt fills the context ({n_past} >= n_ctx {self.n_ctx})")
        res["n_past"] = n_past
        if text_logits:
            res["text_logits"] = np.concatenate(text_after) if text_after else None
        return res

    # -- fidelity helpers (used by tests and export reports) --------------------------------

    def prompt_logits(self, image: np.ndarray, prompt: str) -> dict[str, Any]:
        """Prefill only; returns ``text_logits`` [n_text_after_image, vocab] (float32),
        ``image_embd`` [n_image_tokens, n_embd], ``n_image_tokens`` and ``n_prompt_tokens``."""
        return self._prefill(image, prompt, text_logits=True)

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
            if not self.ignore_eos and self._is_eog(tok):
                return n_past, toks, "eog"
            toks.append((tok, len(out)))
            out += self.piece(tok)
            self._decode([tok], n_past)
            n_past += 1
            tail = bytes(out[toks[-1][1] - 16 :]) if toks[-1][1] >= 16 else bytes(out)
            if not self.ignore_eos and any(s in tail for s in stops):
                return n_past, toks, "stop"
        return n_past, toks, "budget"

    def _force(self, text: str, n_past: int, out: bytearray) -> tuple[int, int]:
        toks = self.tokenize(text)
        self._decode(toks, n_past)
        out += text.encode()
        return n_past + len(toks), len(toks)

    def generate(self, image: np.ndarray, prompt: str) -> ReasonerOutput:
        """Greedy generation for one image + prompt (see the module docstring)."""
        if self._ctx is None:
            raise RuntimeError("reasoner is closed")
        pre = self._prefill(image, prompt)
        n_past, n_prompt = pre["n_past"], pre["n_prompt_tokens"]
        stats = GenerationStats(n_image_tokens=pre.get("n_image_tokens", 0))
        room = self.n_ctx - n_past
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
        if replaced:
            # drop the last token and re-feed its text up to the cut
            last_tok_start = toks[-1][1]
            n_past -= 1
            self._rollback(n_past)
            keep = text[last_tok_start:cut]
            del out[last_tok_start:]
            if keep:
                n_past, k = self._force(keep.decode("utf-8", errors="replace"), n_past, out)
                forced += k
        if close not in bytes(out):
            n_past, k = self._force(gbnf.THINK_CLOSE, n_past, out)
            forced += k
        # the answer, under the grammar; the grammar's language is finite so it terminates
        chain = self._sampler(True)
        try:
            for tok in answer_prefix:
                ll.llama_sampler_accept(chain, tok)
            cap = min(self._answer_cap, self.n_ctx - n_past)
            n_past, atoks, why = self._run(chain, n_past, cap, (gbnf.ANSWER_CLOSE.encode(),), out)
        finally:
            ll.llama_sampler_free(chain)
        stats.answer_tokens = len(atoks)
        stats.forced_tokens = forced
        n_think = stats.think_tokens - (1 if replaced else 0)
        return n_past, n_think + forced + len(atoks), stats.think_truncated or why == "budget"

    def close(self) -> None:
        """Free the llama.cpp objects (idempotent)."""
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
        with contextlib.suppress(Exception):
            self.close()
