"""The keywords that open a bundle's backends, in one place.

:meth:`SegZeroEdge.from_bundle <segzero_edge.pipeline.SegZeroEdge.from_bundle>` and
:func:`segzero_edge.bundle.open_backends` take the same keywords. Their names and types are
:class:`BackendOptions` (typed callers: ``**options: Unpack[BackendOptions]``, PEP 692), their
defaults :data:`BACKEND_DEFAULTS`, their documentation the ``Keys`` section of
:class:`BackendOptions`; :func:`backend_keywords` gives a function taking them a signature and
an Args section that list every keyword, refuses an unknown one by name and fills in the
defaults.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypedDict, TypeVar

from .layout import DEFAULT_MAX_OBJECTS
from .options import whole_number, yes_no
from .reasoner.defaults import DEFAULT_KV_CACHE_TYPE, DEFAULT_N_BATCH, DEFAULT_THINK_BUDGET
from .reasoner.prefix_cache import DEFAULT_PREFIX_CACHE_MB

if TYPE_CHECKING:
    from .reasoner.grammar import AnswerGrammar


class BackendOptions(TypedDict, total=False):
    """Keywords of ``SegZeroEdge.from_bundle`` and ``open_backends``; each may be left out
    (its default is :data:`BACKEND_DEFAULTS`'s).

    Follows llama-cpp-python's ``Llama(model_path, n_ctx=, n_gpu_layers=, n_threads=,
    n_batch=, verbose=)`` for the reasoner and SAM2's ``build_sam2`` / ``SAM2ImagePredictor``
    for the segmenter.

    Keys:
        family: Model family name (``segzero-v1``, ``multi-object``,
            ``multi-object-infer``, ``qwen3vl-grounding``, ``micro-scene``): its prompt,
            answer grammar, coordinate mapping and SAM2 prompt. ``None``: the manifest's;
            needed for a bundle exported before families were recorded.
        segmenter_backend: ``"auto"`` (TensorRT when engines for this device are current,
            else onnxruntime), ``"tensorrt"`` or ``"onnxruntime"``.
        verify_hashes: Check the sha256 of every bundle file (slow for big bundles); sizes
            are always checked.
        overlap: Encode with SAM2 while the reasoner thinks (``True``), after it
            (``False``), or ``None``: overlap only when a backend runs off the CPU
            (:func:`~segzero_edge.placement.default_overlap`). With ``True`` and both
            backends on the CPU, the CPU threads are split between them
            (:func:`~segzero_edge.placement.split_threads`).
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
            number of objects decoded by SAM2 (later ones are dropped).
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
    """

    family: str | None
    segmenter_backend: str
    verify_hashes: bool
    overlap: bool | None
    n_ctx: int | None
    n_gpu_layers: int
    n_threads: int | None
    n_batch: int
    kv_cache_type: str
    max_new_tokens: int | None
    think_budget: int
    grammar: bool
    max_objects: int
    answer_grammar: AnswerGrammar | None
    extra_bufts: bool | None
    use_mmap: bool | None
    prefix_cache_mb: float
    warmup: bool
    verbose: bool


BACKEND_DEFAULTS: Final[BackendOptions] = {
    "family": None,
    "segmenter_backend": "auto",
    "verify_hashes": False,
    "overlap": None,
    "n_ctx": None,
    "n_gpu_layers": -1,
    "n_threads": None,
    "n_batch": DEFAULT_N_BATCH,
    "kv_cache_type": DEFAULT_KV_CACHE_TYPE,
    "max_new_tokens": None,
    "think_budget": DEFAULT_THINK_BUDGET,
    "grammar": True,
    "max_objects": DEFAULT_MAX_OBJECTS,
    "answer_grammar": None,
    "extra_bufts": None,
    "use_mmap": None,
    "prefix_cache_mb": DEFAULT_PREFIX_CACHE_MB,
    "warmup": True,
    "verbose": False,
}
"""The value of every :class:`BackendOptions` keyword a caller leaves out."""


def _keys_section() -> list[str]:
    """The ``Keys`` section of :class:`BackendOptions`' docstring, one line a list item,
    indented as under ``Keys:``."""
    lines = inspect.cleandoc(BackendOptions.__doc__ or "").splitlines()
    start = lines.index("Keys:") + 1
    return [line for line in lines[start:] if line.strip()]


def check_backend_options(options: Mapping[str, object]) -> None:
    """``ValueError`` naming the first :class:`BackendOptions` keyword of a wrong type or
    range, before any backend loads (a string would otherwise reach llama.cpp, or be truthy:
    ``grammar="no"`` would turn the grammar on). ``options``: every keyword (with
    :data:`BACKEND_DEFAULTS` filled in)."""
    from .reasoner.grammar import AnswerGrammar

    max_objects = options["max_objects"]
    whole_number("max_objects", max_objects, minimum=1)
    whole_number("n_gpu_layers", options["n_gpu_layers"], minimum=-1)
    if options["n_threads"] is not None:
        whole_number("n_threads", options["n_threads"], minimum=1)
    whole_number("n_batch", options["n_batch"], minimum=1)
    if options["max_new_tokens"] is not None:
        whole_number("max_new_tokens", options["max_new_tokens"], minimum=1)
    whole_number("think_budget", options["think_budget"], minimum=0)
    for name in ("verify_hashes", "grammar", "warmup"):
        yes_no(name, options[name])
    for name in ("overlap", "extra_bufts", "use_mmap"):
        yes_no(name, options[name], optional=True)
    answer_grammar = options["answer_grammar"]
    if answer_grammar is not None and not isinstance(answer_grammar, AnswerGrammar):
        raise ValueError(
            f"answer_grammar must be an AnswerGrammar or None, got {type(answer_grammar).__name__}"
        )
    yes_no("verbose", options["verbose"])


F = TypeVar("F", bound=Callable[..., Any])


def backend_keywords(fn: F) -> F:
    """Make ``fn`` (declared ``def fn(..., **options: Unpack[BackendOptions])``) take the
    :class:`BackendOptions` keywords as if it listed them.

    The wrapper raises ``TypeError`` as Python does for an unknown keyword (``fn() got an
    unexpected keyword argument 'n_thread'``, with the closest known name) and calls ``fn``
    with every keyword, :data:`BACKEND_DEFAULTS` filled in. Its ``__signature__`` lists the
    keywords (keyword-only, with their types and defaults) in place of ``**options``, so
    ``help()`` and ``inspect.signature`` show them; its docstring's ``**options:`` line is
    followed by the documentation of each (the ``Keys`` section of :class:`BackendOptions`).
    """
    own = inspect.signature(fn)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.parameters.values()):
        raise TypeError(f"{fn.__name__} takes no **options for the backend keywords")
    known = BackendOptions.__annotations__
    defaults: Mapping[str, object] = BACKEND_DEFAULTS
    by_keyword = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
    explicit = {name for name, p in own.parameters.items() if p.kind not in by_keyword}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = dict(defaults)
        for key, value in kwargs.items():
            if key not in known and key not in explicit:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"{fn.__name__}() got an unexpected keyword argument {key!r}{hint}")
            options[key] = value
        return fn(*args, **options)

    params = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key, hint in known.items():
        params.append(
            inspect.Parameter(
                key,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults[key],
                annotation=getattr(hint, "__forward_arg__", hint),
            )
        )
    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    doc = fn.__doc__ or ""
    marker = next((line for line in doc.splitlines() if line.strip().startswith("**options:")), "")
    if marker:
        indent = marker[: len(marker) - len(marker.lstrip())]
        keys = "\n".join(indent + line for line in _keys_section())
        wrapper.__doc__ = doc.replace(marker, f"{marker}\n{keys}", 1)
    return wrapper  # type: ignore[return-value]


__all__ = ["BACKEND_DEFAULTS", "BackendOptions", "backend_keywords", "check_backend_options"]
