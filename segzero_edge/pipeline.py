"""``SegZeroEdge``: reasoner -> coordinate mapping -> SAM2 -> mask, with timings.

Prompt, answer grammar, coordinate mapping and SAM2 prompt are the model family's
(:mod:`segzero_edge.families`), as its reference script runs the checkpoint. The SAM2 image
encoding can run on a worker thread while the reasoner thinks (they share only the image): by
default only when at least one of the two runs off the CPU (see
:func:`segzero_edge.placement.default_overlap`). Encodings are cached per frame so several
queries on one frame encode it once (a failed encoding is not kept). Beside a TensorRT
segmenter the pixel work runs as CUDA kernels on its buffers (:mod:`segzero_edge.cuda_pixels`),
elsewhere as the native CPU twin. ``close()`` waits for the calls in progress on other threads.
The reasoner (llama.cpp) keeps the KV state after a frame's image tokens for later queries on
that frame, and all objects of one answer are decoded by SAM2 in one decoder call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import cuda_pixels, pixels
from .answer import parse_answer
from .backends import ImageEmbedding, PromptChecker, Reasoner, Segmenter
from .errors import BackendError
from .families import ModelFamily, get_family
from .image import Frame, ImageLike, NV12Frame, load_frame
from .image import frame_key as _frame_key
from .layout import DEFAULT_MAX_OBJECTS, REASONER_SIZE
from .options import whole_number, yes_no
from .placement import default_overlap
from .reasoner.prefix_cache import DEFAULT_PREFIX_CACHE_MB
from .segmenter.decode import backend_decoder, best_mask_index, decode_objects
from .segmenter.prompts import batch_prompts, prompt_arrays
from .types import ObjectPrompt, Segmentation, Status, normalize_box

if TYPE_CHECKING:
    from .reasoner.grammar import AnswerGrammar
    from .segmenter.memory import SAM2Memory
    from .tracker import Tracker

log = logging.getLogger(__name__)

_CACHE_HIT = "sam_cache_hit"
"""Key the embedding cache marks a hit with in a call's working timings (moved to its flag)."""
_Encoded = tuple[ImageEmbedding, dict[str, float]]
"""A frame's SAM2 embedding and the seconds its pre-processing and encoding took."""


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
    from .reasoner.grammar import AnswerGrammar

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


class SegZeroEdge:
    """Reasoning segmentation: ``segment(image, query) -> Segmentation``.

    Build it with :meth:`from_bundle`, or pass any :class:`Reasoner` and :class:`Segmenter`
    with the ``family`` (name or :class:`ModelFamily`) of the reasoner's checkpoint.
    ``segment`` is thread-safe: calls may come from several threads at once.
    """

    def __init__(
        self,
        reasoner: Reasoner,
        segmenter: Segmenter,
        *,
        family: str | ModelFamily,
        cache_frames: int = 4,
        overlap: bool | None = None,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        memory: SAM2Memory | None = None,
    ) -> None:
        """``family``: the model family (name or :class:`~segzero_edge.families.ModelFamily`)
        whose prompt, answer mapping and SAM2 prompt are used. ``overlap``: encode with SAM2
        while the reasoner runs (True), after it (False), or ``None`` for
        :func:`~segzero_edge.placement.default_overlap` of the backends' ``device_kind``;
        ``Segmentation.overlap`` says which ran. ``cache_frames`` (frames whose
        SAM2 encoding is kept, 0 = none) and ``max_objects`` (objects decoded per answer) are
        whole numbers; other values raise ``ValueError`` naming the option."""
        self.family = get_family(family)
        self.reasoner = reasoner
        self.segmenter = segmenter
        self.memory = memory
        """SAM2's video memory graphs for :meth:`track` (opened from the bundle on first use)."""
        self.bundle_dir: Path | None = None
        self.cache_frames = whole_number("cache_frames", cache_frames, minimum=0)
        if overlap is None:
            overlap = default_overlap(reasoner.device_kind, segmenter.device_kind)
        self.overlap = bool(overlap)
        self.max_objects = whole_number("max_objects", max_objects, minimum=1)
        usable, why = cuda_pixels.usable(segmenter)
        self._cuda = cuda_pixels.CudaPixels(segmenter, max_objects) if usable else None
        self.pixel_path = "cuda" if self._cuda else "cpu"
        """Where pre/post-processing runs: "cuda" beside a GPU segmenter, else "cpu"."""
        self._cuda_why = why
        self._reasoner_lock = threading.Lock()
        self._segmenter_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._memory_lock = threading.Lock()
        self._cache: OrderedDict[str, Future[_Encoded]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segzero-sam2")
        self._closed = False
        self._calls = 0  # segment() calls in progress
        self._calls_done = threading.Condition()

    @classmethod
    def from_bundle(
        cls,
        path: str | os.PathLike[str],
        *,
        family: str | None = None,
        segmenter_backend: str = "auto",
        verify_hashes: bool = False,
        n_ctx: int | None = None,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        n_batch: int = 512,
        kv_cache_type: str = "f16",
        max_new_tokens: int | None = None,
        think_budget: int = 512,
        grammar: bool = True,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        answer_grammar: AnswerGrammar | None = None,
        extra_bufts: bool | None = None,
        use_mmap: bool | None = None,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
        warmup: bool = True,
        verbose: bool = False,
        cache_frames: int = 4,
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
        from .bundle import open_backends

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

    def describe(self) -> str:
        """One line naming the bundle, the family, each backend with its device and threads,
        the overlap and the pixel path (what ``from_bundle`` logs at INFO)."""
        r, s = self.reasoner, self.segmenter
        where = f" [{', '.join(s.providers)}]" if s.providers else ""
        return (
            f"loaded {self.bundle_dir or 'backends'}: family {self.family.name}; "
            f"reasoner {r.name} on {r.device_kind}"
            + (f" ({r.n_threads} threads)" if r.n_threads else "")
            + f"; segmenter {s.name} on {s.device_kind}{where}"
            + (f" ({s.threads} threads)" if s.threads else "")
            + f"; overlap {'on' if self.overlap else 'off'}; pixels on {self.pixel_path}; "
            f"max_objects {self.max_objects}"
        )

    # -- SAM2 encoding with a per-frame cache ------------------------------------------
    def _encode(self, img: Frame) -> _Encoded:
        t0 = time.perf_counter()
        if self._cuda is not None:  # the kernel writes the encoder's input on the device
            emb = self._locked_encode(self._cuda.encode, img)
            return emb, {"sam_preprocess": 0.0, "sam_encode": time.perf_counter() - t0}
        sam_in = pixels.preprocess_sam(img)
        t1 = time.perf_counter()
        emb = self._locked_encode(self.segmenter.encode, sam_in)
        return emb, {"sam_preprocess": t1 - t0, "sam_encode": time.perf_counter() - t1}

    def _locked_encode(self, encode: Any, x: Any) -> ImageEmbedding:
        """``encode(x)`` under the segmenter lock; its errors become ``BackendError``."""
        with self._segmenter_lock:
            try:
                return encode(x)  # type: ignore[no-any-return]
            except Exception as e:
                raise BackendError(
                    f"segmenter {self.segmenter.name!r} failed to encode: {e}"
                ) from e

    def _embedding_future(self, img: Frame, timings: dict[str, float]) -> Future[_Encoded]:
        key = _frame_key(img) if self.cache_frames else ""
        with self._cache_lock:
            fut = self._cache.get(key) if key else None
            if fut is not None:
                self._cache.move_to_end(key)
                timings[_CACHE_HIT] = 1.0
                return fut
            if self.overlap:
                fut = self._pool.submit(self._encode, img)
            else:
                fut = Future()
                try:
                    fut.set_result(self._encode(img))
                except BaseException as e:
                    fut.set_exception(e)
            if key:
                self._cache[key] = fut
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
        if key:  # a failed encoding leaves the cache, whether or not a caller waits for it
            fut.add_done_callback(lambda f: self._forget_failed(key, f))
        return fut

    def _forget_failed(self, key: str, fut: Future[_Encoded]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            with self._cache_lock:
                if self._cache.get(key) is fut:
                    del self._cache[key]

    def _reasoner_input(self, frame: Frame) -> np.ndarray:
        size = self.family.frame
        if size != REASONER_SIZE:  # the CUDA and native kernels serve the 840 frame only
            if isinstance(frame, NV12Frame) and frame.on_device:
                raise ValueError(
                    f"an NV12 frame in device memory needs the 840 reasoner frame; family "
                    f"{self.family.name!r} uses {size}: pass a host frame"
                )
            return pixels.preprocess_reasoner(frame, size)
        if self._cuda is not None:  # its own stream, buffers and lock: not the segmenter's,
            return self._cuda.reasoner_input(frame)  # so it runs beside an encode in progress
        return pixels.preprocess_reasoner(frame)

    # -- the call -----------------------------------------------------------------------
    def segment(self, image: ImageLike | NV12Frame, query: str) -> Segmentation:
        """Segment what ``query`` describes in ``image``.

        ``image``: a path, a PIL image, an H x W x 3 uint8 RGB array, or an
        :class:`~segzero_edge.image.NV12Frame` (camera / decoder buffers, host or CUDA
        device memory; device memory needs :attr:`pixel_path` ``"cuda"``). The call returns
        after its work on the frame is done: the caller may then reuse the buffers (the
        result's ``image`` refers to the frame as given, for ``plot()``: draw before reusing
        them, or pass ``plot(image=...)``). The result holds one mask per object beside their
        union, boxes ordered and clamped to the image, SAM2's ``iou_predictions``, seconds
        per stage in ``timings`` and the run's flags (``overlap``, ``cuda_pixels``, cache
        hits) and ``generated_tokens`` in their own fields; see
        :class:`~segzero_edge.types.Segmentation`.

        Raises ``ValueError`` for bad input (an image that cannot be read or is too large, an
        empty, over-long or non-text query, a prompt that does not fit the reasoner's
        context), ``BackendError`` when a backend fails, ``RuntimeError`` after :meth:`close`.
        A reasoner that runs out of context gives ``Status.TRUNCATED``.
        """
        with self._in_call():
            return self._segment_many(image, [query])[0]

    def segment_many(
        self, image: ImageLike | NV12Frame, queries: Sequence[str]
    ) -> list[Segmentation]:
        """Segment each of ``queries`` in one ``image``; one :class:`Segmentation` per query.

        The image is loaded, pre-processed and SAM2-encoded once; the reasoner evaluates the
        image tokens once and, for the 2nd..Nth query, restores the KV state after them
        (``reasoner_cache_hit`` is True) and evaluates only the query. Each result
        equals what ``segment(image, query)`` returns. Raises ``ValueError`` for a bad image or
        any bad query, like :meth:`segment`, before any model work: every query is checked
        (characters, and tokens against the context with a
        :class:`~segzero_edge.backends.PromptChecker` reasoner) before the first one runs.
        """
        with self._in_call():
            return self._segment_many(image, queries)

    @contextlib.contextmanager
    def _in_call(self) -> Iterator[None]:
        """Count a call in progress (``segment``, ``segment_many``, a tracker's frame): ``close()``
        waits for it; ``RuntimeError`` once closed."""
        with self._calls_done:
            if self._closed:
                raise RuntimeError("this SegZeroEdge has been closed")
            self._calls += 1
        try:
            yield
        finally:
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def _segment_many(
        self, image: ImageLike | NV12Frame, queries: Sequence[str]
    ) -> list[Segmentation]:
        t_start = time.perf_counter()
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise ValueError("queries must be a list of str (for one query use segment())")
        if not queries:
            raise ValueError("queries is empty: give at least one query")
        for query in queries:
            if isinstance(query, str):
                _require_text(query, "query")
        prompts = [self.family.build_prompt(q) for q in queries]
        img = load_frame(image)
        if isinstance(img, NV12Frame) and img.on_device and self._cuda is None:
            raise ValueError(
                f"an NV12 frame in device memory needs the CUDA path ({self._cuda_why})"
            )
        if isinstance(self.reasoner, PromptChecker):  # every query, before any model work
            for prompt in prompts:
                self.reasoner.check_prompt(prompt)
        first: dict[str, float] = {}
        emb_future = self._embedding_future(img, first)
        t0 = time.perf_counter()
        r_in = self._reasoner_input(img)
        first["preprocess"] = time.perf_counter() - t0
        fkey = _frame_key(img)
        results = []
        for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
            # the 2nd..Nth query reuse the frame's embedding: a SAM2 cache hit
            timings = dict(first) if i == 0 else {_CACHE_HIT: 1.0}
            t_query = t_start if i == 0 else time.perf_counter()
            result = self._segment_prompt(img, fkey, r_in, prompt, emb_future, timings)
            result.timings["total"] = time.perf_counter() - t_query
            result.query = query
            result.image = None if isinstance(img, NV12Frame) and img.on_device else img
            results.append(result)
        if isinstance(img, NV12Frame) and img.on_device:
            emb_future.exception()  # the encode reads the caller's device buffers: finish it
        return results

    def _segment_prompt(
        self,
        img: Frame,
        fkey: str,
        r_in: np.ndarray,
        prompt: str,
        emb_future: Future[_Encoded],
        timings: dict[str, float],
    ) -> Segmentation:
        h, w = img.hw if isinstance(img, NV12Frame) else img.shape[:2]
        t0 = time.perf_counter()
        # the frame key lets the reasoner reuse its KV state of this frame's image tokens
        key = (fkey or None) if self.reasoner.caches_prefix else None
        with self._reasoner_lock:
            try:
                out = self.reasoner.generate(r_in, prompt, frame_key=key)
            except ValueError:  # the caller's input (e.g. a prompt over the context): as is
                raise
            except Exception as e:
                raise BackendError(f"reasoner {self.reasoner.name!r} failed: {e}") from e
        timings["reason"] = time.perf_counter() - t0
        reasoner_timings = dict(out.timings)
        reasoner_hit = bool(reasoner_timings.pop("reasoner_cache_hit", 0.0))  # a flag: not seconds
        timings.update(reasoner_timings)

        parsed = parse_answer(out.text, truncated=out.truncated)
        objects = [
            ObjectPrompt(box=normalize_box(o.box, (h, w)), points=o.points)  # type: ignore[arg-type]
            for o in self.family.to_image_frame(parsed.objects[: self.max_objects], (h, w))
        ]
        object_masks = np.zeros((0, h, w), dtype=bool)
        scores: list[float] = []
        status = parsed.status
        if objects:
            t0 = time.perf_counter()
            try:
                emb, encode_timings = emb_future.result()
            except Exception:
                if _CACHE_HIT not in timings:
                    raise
                # an encoding that an earlier call started (and did not wait for) failed:
                # this call encodes the frame afresh, once, instead of re-raising that error
                self._forget_failed(fkey, emb_future)
                del timings[_CACHE_HIT]
                emb, encode_timings = self._embedding_future(img, timings).result()
            if _CACHE_HIT not in timings:
                timings.update(encode_timings)
            timings["sam_wait"] = time.perf_counter() - t0
            if self._cuda is not None:
                object_masks, scores = self._decode_cuda(emb, objects, (h, w), timings)
            else:
                logits, scores = self._decode(emb, objects, (h, w), timings)
                t0 = time.perf_counter()
                object_masks = np.stack(
                    [pixels.postprocess_masks(lg[None], (h, w)).mask for lg in logits]
                )
                timings["postprocess"] = time.perf_counter() - t0
        sam_hit = bool(timings.pop(_CACHE_HIT, 0.0))  # a flag: not seconds
        return Segmentation(
            mask=np.asarray(object_masks.any(axis=0), dtype=bool),  # N = 0: all False
            object_masks=object_masks,
            objects=objects,
            reasoning=parsed.reasoning,
            answer_raw=out.text,
            status=status,
            timings=timings,
            iou_predictions=scores,
            overlap=self.overlap,
            cuda_pixels=self._cuda is not None,
            sam_cache_hit=sam_hit,
            reasoner_cache_hit=reasoner_hit,
            generated_tokens=int(out.n_generated_tokens),
        )

    def _decode(
        self,
        emb: ImageEmbedding,
        objects: list[ObjectPrompt],
        hw: tuple[int, int],
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[float]]:
        """The family's SAM2 prompt per object, all objects in one decoder call (one per
        distinct point count) -> the best low-res logits of each [N, h, w] and its score."""
        t0 = time.perf_counter()
        decode = backend_decoder(self.segmenter, emb, hw, self._segmenter_lock)
        decoded = decode_objects(objects, self.family.sam2, decode)
        timings["sam_decode"] = time.perf_counter() - t0
        return np.stack(decoded.masks), decoded.scores

    def _decode_cuda(
        self,
        emb: ImageEmbedding,
        objects: list[ObjectPrompt],
        hw: tuple[int, int],
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[float]]:
        """:meth:`_decode` with the logits kept on the GPU: each object's best multimask
        output (the family's SAM2 prompt, the reference's choice among equal scores) is copied
        to a device slot, then the kernel makes each object's mask on the GPU (only the IoUs
        and one bitmask per object come to the host) -> ``[N, H, W]`` bool masks, IoUs."""
        assert self._cuda is not None
        t0 = time.perf_counter()
        scores = [0.0] * len(objects)
        prompts = [self.family.sam2.for_object(o) for o in objects]
        arrays = [prompt_arrays(p.box, p.points, hw, labels=p.labels) for p in prompts]
        step = self.segmenter.max_prompts or 1
        with self._segmenter_lock:
            try:
                for idx, coords, labels in batch_prompts(arrays):
                    for start in range(0, len(idx), step):
                        part = slice(start, start + step)
                        dev = self._cuda.segmenter.decode_on_device(emb, coords[part], labels[part])
                        for row, i in enumerate(idx[part]):
                            best = 1 + best_mask_index(dev[row, 1:])  # the multimask outputs
                            self._cuda.keep(i, row, best)
                            scores[i] = float(dev[row, best])
                timings["sam_decode"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                masks = self._cuda.object_masks(len(objects), hw)
            except Exception as e:
                raise BackendError(
                    f"segmenter {self.segmenter.name!r} failed to decode: {e}"
                ) from e
        timings["postprocess"] = time.perf_counter() - t0
        return masks, scores

    # -- video ------------------------------------------------------------------------------
    def track(
        self,
        frame: ImageLike | NV12Frame,
        query: str,
        *,
        rereason_after: int | None = None,
        score_threshold: float = 0.0,
        num_frames: int | None = None,
    ) -> Tracker:
        """Reason once on ``frame``, then follow the objects with SAM2's video memory.

        Follows SAM2's ``SAM2VideoPredictor`` (``add_new_points_or_box`` with the answer's
        boxes and points, then ``propagate_in_video``, one object at a time).

        Args:
            frame: The first frame, as :meth:`segment` takes it.
            query: What to follow, as :meth:`segment` takes it.
            rereason_after: Re-run the reasoner by itself after this many frames in a row
                with a lost object (``None``: never; ``update(frame, reason=True)`` asks).
            score_threshold: An object is present when SAM2's object score logit is above it.
            num_frames: The clip's length when known (pointer distances are normalised by
                it, as SAM2 does for a clip); ``None``: a live stream.

        Returns:
            A :class:`~segzero_edge.tracker.Tracker`: ``tracker.update(next_frame)`` gives a
            :class:`~segzero_edge.tracker.TrackedSegmentation` per frame without the reasoner.

        Raises:
            BundleError: The bundle was exported before tracking existed (re-export it;
                ``segment()`` still works).
            ValueError: A bad frame, query or option (named).
            RuntimeError: After :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("this SegZeroEdge has been closed")
        from .tracker import Tracker

        return Tracker(
            self,
            self._tracking_memory(),
            frame,
            query,
            rereason_after=rereason_after,
            score_threshold=score_threshold,
            num_frames=num_frames,
        )

    def _tracking_memory(self) -> SAM2Memory:
        with self._memory_lock:
            if self.memory is None:
                if self.bundle_dir is None:
                    raise RuntimeError(
                        "track() needs SAM2's memory graphs: load with SegZeroEdge.from_bundle "
                        "or pass memory= (segzero_edge.bundle_memory.open_memory)"
                    )
                from .bundle_memory import open_memory

                if self.segmenter.backend == "tensorrt":
                    self.memory = open_memory(self.bundle_dir, "tensorrt")
                else:
                    self.memory = open_memory(
                        self.bundle_dir, "onnxruntime", providers=self.segmenter.providers
                    )
            return self.memory

    def close(self) -> None:
        """Release the backends and the worker thread, once the calls in progress on other
        threads have returned; later calls raise ``RuntimeError``. Idempotent."""
        with self._calls_done:
            if self._closed:
                return
            self._closed = True
            self._calls_done.wait_for(lambda: self._calls == 0)
        self._pool.shutdown(wait=True)
        if self._cuda is not None:
            self._cuda.close()
        self.reasoner.close()
        self.segmenter.close()
        if self.memory is not None:
            self.memory.close()

    def __enter__(self) -> SegZeroEdge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_text(text: str, what: str) -> None:
    """``ValueError`` naming the first lone surrogate (not encodable as UTF-8) in ``text``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text: lone surrogate {text[e.start]!r} at index {e.start} "
            "(a non-UTF-8 byte on the command line?)"
        ) from None


__all__ = ["BackendError", "SegZeroEdge", "Status"]
