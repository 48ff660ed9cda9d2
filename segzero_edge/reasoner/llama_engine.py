"""The loaded reasoner: model, context, batch and vision context, and the KV cells in use.

:class:`Engine` opens the C objects (:mod:`~.llama_objects`) in order, text model, context,
libmtmd's vision context, batch, and closes them in the reverse order through one
:class:`contextlib.ExitStack` (a load that fails part-way closes what it opened). It decodes
token ids at given positions and keeps count of the KV cells in use: budgets count cells, not
positions (with M-RoPE the 900 image tokens take 900 cells but advance the position by 30).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp

from ..errors import CpuVariantError, ReasonerLoadError
from . import llama_system
from .chat import BACKBONES, Backbone, utf8
from .llama_log import LOG_SINK
from .llama_objects import LlamaBatch, LlamaContext, LlamaModel, MtmdContext

KV_CACHE_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}
"""``kv_cache_type`` name -> ggml type of the K and V cache."""


@dataclass(frozen=True)
class EngineParams:
    """What the C objects are created with (validated by the reasoner).

    ``n_gpu_layers``: layers offloaded (-1 all, 0 none); ``offload``: whether this llama.cpp
    build offloads them; ``kv_type``: a ``GGML_TYPE_*``;
    ``use_mmap``: ``None`` keeps llama.cpp's default; ``image_tokens``: libmtmd's min = max
    image tokens, ``None`` for the backbone's default.
    """

    n_ctx: int
    n_gpu_layers: int
    offload: bool
    n_threads: int
    n_batch: int
    kv_type: int
    use_extra_bufts: bool
    use_mmap: bool | None
    warmup: bool
    image_tokens: int | None


class Engine:
    """The C objects of one reasoner and its KV bookkeeping.

    Raises :class:`ReasonerLoadError` when llama.cpp or libmtmd cannot load the files or the
    text GGUF's ``general.architecture`` is not in :data:`~.chat.BACKBONES`.
    """

    def __init__(self, model_path: Path, mmproj_path: Path, params: EngineParams) -> None:
        self.n_batch = params.n_batch
        self.n_threads = params.n_threads
        self.device_kind = "gpu" if params.offload else "cpu"
        """Where the layers run: "gpu" (offloaded) or "cpu"."""
        self.info: dict[str, Any] = {}
        """How it was loaded (:func:`open_engine`)."""
        self.cells = 0
        """KV cells in use."""
        self.next_pos = 0
        """The position after the last token decoded."""
        with contextlib.ExitStack() as stack:
            n_log = LOG_SINK.count
            self.model = stack.enter_context(LlamaModel(model_path, _model_params(params)))
            self.model_load_log = [line for _, line in LOG_SINK.since(n_log)]
            """llama.cpp's log lines while the text model loaded."""
            self.arch = self.model.meta("general.architecture")
            """The text GGUF's architecture (``qwen2vl``, ``qwen3vl``)."""
            if self.arch not in BACKBONES:
                raise ReasonerLoadError(
                    f"{model_path} is a {self.arch!r} model; the reasoner serves "
                    f"{', '.join(BACKBONES)} (Qwen2.5-VL, Qwen3-VL)"
                )
            self.backbone: Backbone = BACKBONES[self.arch]
            self.image_tokens = int(params.image_tokens or self.backbone.default_image_tokens)
            self.resize_size = math.isqrt(self.image_tokens) * self.backbone.patch_merge
            """Side (pixels) of the square image that gives exactly ``image_tokens`` tokens (the
            family's ``resize_size``)."""
            self.ctx = stack.enter_context(LlamaContext(self.model, _context_params(params)))
            self.n_ctx = self.ctx.n_ctx
            mparams = mtmd_cpp.mtmd_context_params_default()
            mparams.use_gpu = params.n_gpu_layers != 0
            mparams.n_threads = params.n_threads
            mparams.print_timings = False
            mparams.warmup = params.warmup
            mparams.image_min_tokens = mparams.image_max_tokens = self.image_tokens
            self.mtmd = stack.enter_context(MtmdContext(mmproj_path, self.model, mparams))
            self.batch = stack.enter_context(LlamaBatch(self.n_batch))
            self._stack = stack.pop_all()

    def close(self) -> None:
        """Free batch, vision context, context and model, in that order (idempotent)."""
        self._stack.close()

    # -- vocabulary -------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Tokens of ``text``, no BOS added; with ``special`` the text of special tokens
        becomes those tokens. Raises ``ValueError`` for text with a lone surrogate."""
        data = utf8(text, "text")
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(
            self.model.vocab, data, len(data), buf, len(buf), False, special
        )
        if n < 0:
            raise RuntimeError(f"tokenization failed for {text[:40]!r}")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of ``token`` (a piece of UTF-8, not always whole characters)."""
        vocab = self.model.vocab
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (``llama_vocab_is_eog``: EOS, ``<|im_end|>``...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.model.vocab, token))

    # -- the KV cells -----------------------------------------------------------------------

    @property
    def free_cells(self) -> int:
        """KV cells still free (``n_ctx`` minus the cells in use)."""
        return self.n_ctx - self.cells

    def clear(self) -> None:
        """Empty the KV cache."""
        llama_cpp.llama_memory_clear(self.ctx.memory(), True)
        self.cells = self.next_pos = 0

    def rollback(self, pos: int) -> None:
        """Drop the text tokens at positions ``pos...`` (one KV cell each)."""
        llama_cpp.llama_memory_seq_rm(self.ctx.memory(), 0, pos, -1)
        self.cells -= self.next_pos - pos
        self.next_pos = pos

    def decode(self, tokens: list[int], pos: int, logits: str = "last") -> np.ndarray | None:
        """Decode ``tokens`` at positions ``pos...`` in sequence 0, ``n_batch`` at a time.

        ``logits``: ``"none"``, ``"last"`` (kept in the context for sampling) or ``"all"``
        (returned, ``[len(tokens), n_vocab]`` float32). Raises ``RuntimeError`` when the
        tokens do not fit the free cells or ``llama_decode`` fails.
        """
        if len(tokens) > self.free_cells:  # the budgets keep this from happening
            raise RuntimeError(
                f"KV cache full: {len(tokens)} tokens, {self.free_cells} of n_ctx "
                f"{self.n_ctx} cells free"
            )
        n_vocab = self.model.n_vocab
        out: list[np.ndarray] = []
        b = self.batch.batch
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
            n_log = LOG_SINK.count
            rc = llama_cpp.llama_decode(self.ctx.ptr, b)
            LOG_SINK.raise_interrupt()
            if rc != 0:
                raise RuntimeError(
                    f"llama_decode failed with code {rc}: {LOG_SINK.errors_since(n_log)}"
                )
            self.cells += len(part)
            self.next_pos = pos + start + len(part)
            if logits == "all":
                for i in range(len(part)):
                    ptr = llama_cpp.llama_get_logits_ith(self.ctx.ptr, i)
                    out.append(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy())
        if logits == "all":
            return np.stack(out) if out else np.zeros((0, n_vocab), np.float32)
        return None


def open_engine(
    model_path: Path,
    mmproj_path: Path,
    *,
    n_ctx: int,
    n_gpu_layers: int,
    n_threads: int,
    n_batch: int,
    kv_cache_type: str,
    image_tokens: int | None,
    warmup: bool,
    extra_bufts: bool | None,
    use_mmap: bool | None,
) -> Engine:
    """Prepare llama.cpp for this machine and load an :class:`Engine` (options as
    :class:`~.llama_cpp.LlamaCppReasoner`'s).

    Loads the CPU backend variant, refuses a build this CPU cannot run, decides
    ``use_extra_bufts`` (:func:`.llama_system.decide_extra_bufts`) and ``use_mmap`` (not
    mapped when the layers run on the CPU with repacking on), and records the choices in
    :attr:`Engine.info`. Raises :class:`ReasonerLoadError`.
    """
    try:
        variant = llama_system.ensure_cpu_backend()
    except CpuVariantError as e:
        raise ReasonerLoadError(str(e)) from None
    llama_cpp.llama_backend_init()
    mismatch = llama_system.cpu_mismatch()
    if mismatch:
        raise ReasonerLoadError(mismatch)
    offload = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
    use_extra, extra_why = llama_system.decide_extra_bufts(extra_bufts)
    if use_mmap is None and use_extra and not offload:
        use_mmap = False  # else llama.cpp's own default (AUTO)
    params = EngineParams(
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        offload=offload,
        n_threads=n_threads,
        n_batch=n_batch,
        kv_type=KV_CACHE_TYPES[kv_cache_type],
        use_extra_bufts=use_extra,
        use_mmap=use_mmap,
        warmup=warmup,
        image_tokens=image_tokens,
    )
    engine = Engine(model_path, mmproj_path, params)
    engine.info = {
        "use_extra_bufts": use_extra,
        "use_extra_bufts_reason": extra_why,
        "cpu_variant": variant.chosen.name if variant else None,
        "cpu_features": llama_system.cpu_features(),
        "model_buffers_mib": llama_system.model_buffer_types(engine.model_load_log),
    }
    return engine


def _model_params(p: EngineParams) -> llama_cpp.llama_model_params:
    mparams: llama_cpp.llama_model_params = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = p.n_gpu_layers
    mparams.use_extra_bufts = p.use_extra_bufts
    if p.use_mmap is not None:
        mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if p.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        mparams.load_mode = mode
    return mparams


def _context_params(p: EngineParams) -> llama_cpp.llama_context_params:
    cparams: llama_cpp.llama_context_params = llama_cpp.llama_context_default_params()
    cparams.n_ctx = p.n_ctx
    cparams.n_batch = cparams.n_ubatch = p.n_batch
    cparams.n_threads = cparams.n_threads_batch = p.n_threads
    cparams.no_perf = True
    cparams.type_k = cparams.type_v = p.kv_type
    return cparams
