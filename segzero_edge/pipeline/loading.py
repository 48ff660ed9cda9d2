"""Loading a bundle: :meth:`SegZeroEdge.from_bundle
<segzero_edge.pipeline.SegZeroEdge.from_bundle>` (defined here, bound as that classmethod by the
package): every option checked before any backend loads, then the bundle's reasoner and
segmenter opened (:func:`segzero_edge.bundle.open_backends`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import DEFAULT_MAX_OBJECTS
from ..options import whole_number, yes_no
from ..reasoner.defaults import DEFAULT_KV_CACHE_TYPE, DEFAULT_N_BATCH, DEFAULT_THINK_BUDGET
from ..reasoner.prefix_cache import DEFAULT_PREFIX_CACHE_MB
from .embedding_cache import DEFAULT_CACHE_FRAMES

if TYPE_CHECKING:
    from ..reasoner.grammar import AnswerGrammar
    from . import SegZeroEdge

log = logging.getLogger("segzero_edge.pipeline")
"""SegZeroEdge's logger: the line a load logs at INFO is the model's."""


def _check_backend_options(
    *,
    n_gpu_layers: object,
    n_threads: object,
    n_batch: object,
    max_new_tokens: object,
    think_budget: object,
    answer_grammar: object,
    flags: dict[str, object],
    optional_flags: dict[str, object],
) -> None:
    """``ValueError`` naming the first :meth:`SegZeroEdge.from_bundle` keyword of a wrong type
    or range, before any backend loads (a string would otherwise reach llama.cpp, or be
    truthy: ``grammar="no"`` would turn the grammar on)."""
    from ..reasoner.grammar import AnswerGrammar

    whole_number("n_gpu_layers", n_gpu_layers, minimum=-1)
    if n_threads is not None:
        whole_number("n_threads", n_threads, minimum=1)
    whole_number("n_batch", n_batch, minimum=1)
    if max_new_tokens is not None:
        whole_number("max_new_tokens", max_new_tokens, minimum=1)
    whole_number("think_budget", think_budget, minimum=0)
    for name, value in flags.items():
        yes_no(name, value)
    for name, value in optional_flags.items():
        yes_no(name, value, optional=True)
    if answer_grammar is not None and not isinstance(answer_grammar, AnswerGrammar):
        raise ValueError(
            f"answer_grammar must be an AnswerGrammar or None, got {type(answer_grammar).__name__}"
        )


def from_bundle(
    cls: type[SegZeroEdge],
    /,
    path: str | os.PathLike[str],
    *,
    family: str | None = None,
    segmenter_backend: str = "auto",
    verify_hashes: bool = False,
    n_ctx: int | None = None,
    n_gpu_layers: int = -1,
    n_threads: int | None = None,
    n_batch: int = DEFAULT_N_BATCH,
    kv_cache_type: str = DEFAULT_KV_CACHE_TYPE,
    max_new_tokens: int | None = None,
    think_budget: int = DEFAULT_THINK_BUDGET,
    grammar: bool = True,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    answer_grammar: AnswerGrammar | None = None,
    extra_bufts: bool | None = None,
    use_mmap: bool | None = None,
    prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
    warmup: bool = True,
    verbose: bool = False,
    cache_frames: int = DEFAULT_CACHE_FRAMES,
    overlap: bool | None = None,
) -> SegZeroEdge:
    """Load a bundle folder (``segzero-edge export`` wrote it): verify its manifest and
    files, open the reasoner (llama.cpp) and the segmenter (SAM2 on TensorRT or
    onnxruntime).

    Follows llama-cpp-python's ``Llama(model_path, n_ctx=, n_gpu_layers=, n_threads=,
    n_batch=, verbose=)`` for the reasoner and SAM2's ``build_sam2`` /
    ``SAM2ImagePredictor`` for the segmenter; every option is a keyword.

    Args:
        path: The bundle folder (holds ``manifest.json``).
        family: Model family name (``segzero-v1``, ``multi-object``,
            ``multi-object-infer``, ``qwen3vl-grounding``, ``micro-scene``): its prompt,
            answer grammar, coordinate mapping and SAM2 prompt. ``None``: the manifest's;
            needed for a bundle exported before families were recorded.
        segmenter_backend: ``"auto"`` (TensorRT when engines for this device are current,
            else onnxruntime), ``"tensorrt"`` or ``"onnxruntime"``.
        verify_hashes: Check the sha256 of every bundle file (slow for big bundles); sizes
            are always checked.
        n_ctx: The reasoner's context in KV cells (1 to 1,048,576; llama.cpp rounds up to a
            multiple of 256). ``None``: the manifest's ``reasoner.n_ctx``.
        n_gpu_layers: Layers llama.cpp offloads to the GPU; -1 all (when llama.cpp was
            built with CUDA), 0 none.
        n_threads: CPU threads of llama.cpp (``None``: one per core). With ``overlap`` and
            both backends on the CPU, the total split between llama.cpp and SAM2.
        n_batch: llama.cpp's batch (tokens per ``llama_decode`` during the prefill).
        kv_cache_type: ``"f16"`` or ``"f32"`` KV cache.
        max_new_tokens: Cap on generated tokens (``grammar=False``) and on the thinking
            part. ``None``: the family's (1024, as its reference script).
        think_budget: Tokens the ``<think>`` text may take before ``</think>`` is forced
            (with the grammar).
        grammar: Sample the answer under the family's GBNF grammar (it always parses);
            ``False`` decodes plain greedy, as the reference scripts do.
        max_objects: Objects one answer may name: the bound of the answer grammar and the
            number of objects decoded by SAM2 (later ones are dropped). Default 8.
        answer_grammar: A GBNF grammar replacing the family's
            (:class:`~segzero_edge.reasoner.grammar.AnswerGrammar`, e.g. to constrain
            the answers in a test); ``None``: the family's for ``max_objects``.
        extra_bufts: llama.cpp's extra buffer types (weights repacked for the CPU's SIMD
            or AMX units). ``None``: off where llama.cpp reports AMX, on elsewhere
            (``SEGZERO_LLAMA_EXTRA_BUFTS=1/0`` forces).
        use_mmap: Map the GGUF instead of reading it. ``None``: not when the layers run
            on the CPU with repacking (the mapped pages would stay resident beside the
            copies).
        prefix_cache_mb: MiB of saved KV state after a frame's image tokens, so a later
            query on the same frame evaluates only its own tokens; 0 turns it off.
        warmup: Run libmtmd's warm-up encode at load (``False``: faster start, slower
            first image).
        verbose: Print llama.cpp's own log to stderr (it is always kept in
            ``reasoner.load_log``).
        cache_frames: Frames whose SAM2 encoding is kept (0: none).
        overlap: Encode with SAM2 while the reasoner thinks (``True``), after it
            (``False``), or ``None``: overlap only when a backend runs off the CPU
            (:func:`~segzero_edge.placement.default_overlap`).

    Returns:
        A :class:`SegZeroEdge`; use it as a context manager or call :meth:`close`.

    Raises:
        TypeError: An unknown keyword (a typo), named by Python in the message.
        ValueError: A bad option value (named), e.g. ``max_objects=0``, an unknown family
            or segmenter backend, an ``n_ctx`` too small for the family's prompt.
        BundleError: The folder is not a readable bundle (names the file and field).
        BackendError: llama.cpp or onnxruntime cannot load a model file
            (``ReasonerLoadError`` for the reasoner).
        TensorRTUnavailable: ``segmenter_backend="tensorrt"`` cannot run here.
    """
    from ..bundle import open_backends

    # the pipeline's own options are checked before the backends load
    cache_frames = whole_number("cache_frames", cache_frames, minimum=0)
    max_objects = whole_number("max_objects", max_objects, minimum=1)
    _check_backend_options(
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_batch=n_batch,
        max_new_tokens=max_new_tokens,
        think_budget=think_budget,
        answer_grammar=answer_grammar,
        flags={"verify_hashes": verify_hashes, "grammar": grammar, "warmup": warmup},
        optional_flags={"overlap": overlap, "extra_bufts": extra_bufts, "use_mmap": use_mmap},
    )
    yes_no("verbose", verbose)
    t0 = time.perf_counter()
    reasoner, segmenter, fam = open_backends(
        path,
        family=family,
        segmenter_backend=segmenter_backend,
        verify_hashes=verify_hashes,
        overlap=overlap,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_batch=n_batch,
        kv_cache_type=kv_cache_type,
        max_new_tokens=max_new_tokens,
        think_budget=think_budget,
        grammar=grammar,
        max_objects=max_objects,
        answer_grammar=answer_grammar,
        extra_bufts=extra_bufts,
        use_mmap=use_mmap,
        prefix_cache_mb=prefix_cache_mb,
        warmup=warmup,
        verbose=verbose,
    )
    model = cls(
        reasoner,
        segmenter,
        family=fam,
        overlap=overlap,
        cache_frames=cache_frames,
        max_objects=max_objects,
    )
    model.bundle_dir = Path(path)
    log.info("%s (%.1f s)", model.describe(), time.perf_counter() - t0)
    return model


__all__ = ["from_bundle"]
