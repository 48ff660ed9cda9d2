"""SAM2 segmenter on onnxruntime: the two exported ONNX graphs, any execution provider."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ImageEmbedding
from ..errors import BackendError
from ..layout import (
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_DECODER_TRACK_OUTPUTS,
    SAM2_ENCODER_INPUTS,
    SAM2_ENCODER_OUTPUTS,
    SAM2_LOW_RES,
    SAM2_POINT_INPUTS,
    SAM2_SIZE,
)
from .prompts import check_prompt_batch

PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
ENCODER_INPUTS = SAM2_ENCODER_INPUTS
ENCODER_OUTPUTS = SAM2_ENCODER_OUTPUTS
DECODER_INPUTS = SAM2_DECODER_INPUTS
DECODER_OUTPUTS = SAM2_DECODER_OUTPUTS
IMAGE_SHAPE = (1, 3, SAM2_SIZE, SAM2_SIZE)
MASK_INPUT_SHAPE = (1, 1, SAM2_LOW_RES, SAM2_LOW_RES)


def _short_name(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider").lower()


TRT_CACHE_SUBDIR = "onnxruntime-trt"  # in bundle/engines/<device fingerprint>/


def tensorrt_provider_options(
    cache_dir: str | os.PathLike[str],
    *,
    fp16: bool = True,
    points_profile: tuple[int, int, int] | None = None,
    prompts_profile: tuple[int, int, int] | None = None,
    decoder: bool = False,
) -> dict[str, Any]:
    """Options of onnxruntime's TensorRT execution provider for the SAM2 graphs.

    FP16 with layer normalisations kept in FP32 (``trt_layer_norm_fp32_fallback``, as
    ``build-engines`` pins them); the engine cache and the timing cache in ``cache_dir`` (the
    bundle's engine folder of this device, so engines are built once per device instead of
    at every start, which takes minutes on an Orin); with ``decoder`` an optimisation
    profile for the decoder's prompt (batch, dim 0: every object of an answer in one call)
    and point (dim 1) axes: ``prompts_profile`` / ``points_profile`` (min, opt, max), by
    default those ``build-engines`` uses; ``(1, 1, 1)`` prompts for a decoder exported
    before the batch axis. Option names and the ``name:AxBxC,...`` shape syntax as in
    onnxruntime's TensorRT EP documentation (``trt_fp16_enable``,
    ``trt_layer_norm_fp32_fallback``, ``trt_engine_cache_path``, ``trt_timing_cache_path``,
    ``trt_profile_{min,opt,max}_shapes``). Raises ``ValueError`` for a profile that is not
    ``1 <= min <= opt <= max``.
    """
    from ..engine_cache import POINTS_PROFILE, PROMPTS_PROFILE

    points = points_profile or POINTS_PROFILE
    prompts = prompts_profile or PROMPTS_PROFILE
    for what, profile in (("points", points), ("prompts", prompts)):
        if len(profile) != 3 or not 1 <= profile[0] <= profile[1] <= profile[2]:
            raise ValueError(f"{what} profile must satisfy 1 <= min <= opt <= max, got {profile}")
    shapes = {
        which: ",".join(
            f"{name}:{b}x{n}x2" if name == "point_coords" else f"{name}:{b}x{n}"
            for name in SAM2_POINT_INPUTS
        )
        for which, b, n in zip(("min", "opt", "max"), prompts, points, strict=True)
    }
    options: dict[str, Any] = {
        "trt_fp16_enable": bool(fp16),
        "trt_layer_norm_fp32_fallback": bool(fp16),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if decoder:
        options.update({f"trt_profile_{which}_shapes": v for which, v in shapes.items()})
    return options


def parse_profile_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """``"point_coords:16x16x2,point_labels:16x16"`` (a ``trt_profile_*_shapes`` value) ->
    ``{"point_coords": (16, 16, 2), "point_labels": (16, 16)}``; ``ValueError`` when malformed."""
    out: dict[str, tuple[int, ...]] = {}
    for item in text.split(","):
        name, sep, dims = item.strip().rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise ValueError(f"malformed TensorRT profile shape {item!r} in {text!r}")
        out[name] = shape
    return out


def decoder_has_batch_axis(ort: Any, path: Path) -> bool:
    """Whether the decoder graph's ``point_coords`` has a dynamic prompt axis (exported with
    the batch axis) rather than a fixed 1. Read from a CPU session without optimisations
    (cheap), before the TensorRT execution provider is given a profile for that axis."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = OrtSegmenter._open(ort, path, options, ["CPUExecutionProvider"])
    shape = {i.name: i.shape for i in session.get_inputs()}[SAM2_POINT_INPUTS[0]]
    return bool(shape) and not isinstance(shape[0], int)


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The requested providers (all must be available), or TensorRT > CUDA > CPU."""
    if requested is None:
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
        return chosen or list(available)
    missing = [p for p in requested if p not in available]
    if missing:
        raise ValueError(
            f"onnxruntime execution provider(s) {missing} not available here; "
            f"available: {list(available)}"
        )
    if not requested:
        raise ValueError("providers must name at least one onnxruntime execution provider")
    return list(requested)


class OrtSegmenter:
    """SAM2 encoder + decoder ONNX graphs run with onnxruntime (``Segmenter`` protocol).

    ``close()`` waits for a call in progress on another thread; later calls raise
    ``RuntimeError``.
    """

    def __init__(
        self,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        fp16: bool = True,
        trt_cache_dir: str | os.PathLike[str] | None = None,
        spin_wait: bool = False,
    ) -> None:
        """Open both graphs with ``providers`` (default: TensorRT > CUDA > CPU, those present).

        With onnxruntime's TensorRT execution provider the engines are FP16 (``fp16``) and
        cached in ``trt_cache_dir`` (default: ``engines/<device fingerprint>/onnxruntime-trt``
        next to the ONNX files; see :func:`tensorrt_provider_options`).

        ``spin_wait`` (default off): let idle pool threads spin between and after runs. Off,
        they sleep instead, so they do not take cores from llama.cpp, which runs before and
        after (and beside, when overlapped) every SAM2 call; ``python -m
        segzero_bench.sam2_session`` measures both. The graph optimisation level stays
        onnxruntime's default, ``ORT_ENABLE_ALL`` (its fusions and layout transforms).
        """
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeError(
                "onnxruntime is not installed (pip install 'segzero-edge[runtime]')"
            ) from e
        self._lock = threading.Lock()
        self._encoder = self._decoder = None
        paths = {"encoder": Path(encoder_path), "decoder": Path(decoder_path)}
        for role, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"SAM2 {role} ONNX file not found: {path}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        chosen = choose_providers(providers, ort.get_available_providers())
        per_graph: dict[str, list[Any]] = {"encoder": list(chosen), "decoder": list(chosen)}
        trt_max_prompts: int | None = None  # the TensorRT EP's profile caps the batch
        if "TensorrtExecutionProvider" in chosen:
            if trt_cache_dir is None:
                from ..engine_cache import engine_dir

                trt_cache_dir = engine_dir(paths["encoder"].parent) / TRT_CACHE_SUBDIR
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            batched = decoder_has_batch_axis(ort, paths["decoder"])
            i = chosen.index("TensorrtExecutionProvider")
            for role, graph_providers in per_graph.items():
                is_decoder = role == "decoder"
                opts = tensorrt_provider_options(
                    trt_cache_dir, fp16=fp16, decoder=is_decoder,
                    prompts_profile=None if batched else (1, 1, 1),
                )  # fmt: skip
                graph_providers[i] = ("TensorrtExecutionProvider", opts)
            dec_opts = per_graph["decoder"][i][1]
            max_shapes = parse_profile_shapes(dec_opts["trt_profile_max_shapes"])
            trt_max_prompts = max_shapes[SAM2_POINT_INPUTS[0]][0]
        self.trt_cache_dir = None if trt_cache_dir is None else Path(trt_cache_dir)
        self.threads = threads
        """onnxruntime's intra-op threads (``None``: its default, one per core)."""
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spin_wait else "0"
        )
        options.add_session_config_entry(
            "session.inter_op.allow_spinning", "1" if spin_wait else "0"
        )
        self._encoder = self._open(ort, paths["encoder"], options, per_graph["encoder"])
        self._decoder = self._open(ort, paths["decoder"], options, per_graph["decoder"])
        self._check_io(self._encoder, paths["encoder"], ENCODER_INPUTS, ENCODER_OUTPUTS)
        self._check_io(self._decoder, paths["decoder"], DECODER_INPUTS, DECODER_OUTPUTS)
        points_in = {i.name: i for i in self._decoder.get_inputs()}["point_coords"]
        batch_dim = points_in.shape[0] if points_in.shape else None
        self.max_prompts: int | None = batch_dim if isinstance(batch_dim, int) else None
        """Prompts per decoder call: None (any) for graphs with a batch axis, 1 for graphs
        exported before it (``decode`` then runs one call per prompt); with the TensorRT
        execution provider at most its profile's maximum (``decode`` splits larger batches)."""
        if trt_max_prompts is not None and "TensorrtExecutionProvider" in (
            self._decoder.get_providers()
        ):
            self.max_prompts = min(self.max_prompts or trt_max_prompts, trt_max_prompts)
        self.providers = list(self._encoder.get_providers())
        self.name = f"onnxruntime-{_short_name(self.providers[0])}"
        self.device_kind = "cpu" if self.providers[0] == "CPUExecutionProvider" else "gpu"
        """Where the graphs run: "cpu" or "gpu" (the first execution provider)."""
        self._no_mask = np.zeros(MASK_INPUT_SHAPE, dtype=np.float32)

    @staticmethod
    def _open(ort: Any, path: Path, options: Any, providers: list[Any]) -> Any:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"onnxruntime cannot load {path}: {first}") from e

    @staticmethod
    def _check_io(
        session: Any, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]
    ) -> None:
        got_in = tuple(i.name for i in session.get_inputs())
        got_out = tuple(o.name for o in session.get_outputs())
        if set(got_in) != set(inputs) or not set(outputs) <= set(got_out):
            raise ValueError(
                f"{path} is not a SAM2 graph of this project: inputs {got_in}, outputs "
                f"{got_out}; expected inputs {inputs} and outputs {outputs} "
                "(export it with segzero_export.sam2_onnx.export_sam2)"
            )

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """``[1, 3, 1024, 1024]`` float32 normalised image -> SAM2 image features."""
        if tuple(image.shape) != IMAGE_SHAPE:
            raise ValueError(f"SAM2 encoder input must be {IMAGE_SHAPE}, got {tuple(image.shape)}")
        image = np.ascontiguousarray(image, dtype=np.float32)
        with self._lock:
            f0, f1, embed = self._session("_encoder").run(list(ENCODER_OUTPUTS), {"image": image})
        return ImageEmbedding(image_embed=embed, high_res_feats_0=f0, high_res_feats_1=f1)

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        *,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """B prompts on one image -> low-res logits ``[B, 4, 256, 256]`` and IoU ``[B, 4]``.

        ``point_coords [B, P, 2]`` float32 in the 1024 frame and ``point_labels [B, P]`` (see
        :class:`~segzero_edge.backends.Segmenter`): one decoder call for the batch, giving per
        prompt what a call with that prompt alone gives. ``mask_input`` (optional,
        ``[1, 1, 256, 256]`` logits) is a previous low-res mask, applied to every prompt.
        Raises ``ValueError`` for badly shaped prompts.
        """
        coords, labels = check_prompt_batch(point_coords, point_labels)
        step = self.max_prompts or coords.shape[0]
        if step < coords.shape[0]:  # a graph without the batch axis: one call per prompt
            parts = [
                (coords[i : i + step], labels[i : i + step]) for i in range(0, len(coords), step)
            ]
            outs = [self.decode(embedding, c, lb, mask_input=mask_input) for c, lb in parts]
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        mask: np.ndarray
        if mask_input is None:
            mask, has_mask = self._no_mask, np.zeros(1, dtype=np.float32)
        else:
            mask = np.ascontiguousarray(mask_input, dtype=np.float32).reshape(MASK_INPUT_SHAPE)
            has_mask = np.ones(1, dtype=np.float32)
        feeds = _decoder_feeds(embedding, coords, labels, mask, has_mask)
        with self._lock:
            masks, iou = self._session("_decoder").run(list(DECODER_OUTPUTS), feeds)
        return masks, iou

    def _session(self, attr: str) -> Any:
        session = getattr(self, attr)
        if session is None:
            raise RuntimeError("this OrtSegmenter has been closed")
        return session

    @property
    def can_track(self) -> bool:
        """Whether the decoder graph has the tracking outputs (exported with tracking)."""
        names = {o.name for o in self._session("_decoder").get_outputs()}
        return set(SAM2_DECODER_TRACK_OUTPUTS) <= names

    def decode_track(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` plus ``object_score_logits [B, 1]`` and ``obj_ptr [B, 4, 256]``.

        Raises ``RuntimeError`` when the decoder graph predates tracking (re-export it).
        """
        if not self.can_track:
            raise RuntimeError(
                "the SAM2 decoder graph has no object score / pointer outputs (exported before "
                "tracking existed); re-export the bundle to use track()"
            )
        coords, labels = check_prompt_batch(point_coords, point_labels)
        if self.max_prompts is not None and coords.shape[0] > self.max_prompts:
            raise ValueError(f"decode_track takes at most {self.max_prompts} prompts here")
        feeds = _decoder_feeds(
            embedding, coords, labels, self._no_mask, np.zeros(1, dtype=np.float32)
        )
        names = [*DECODER_OUTPUTS, *SAM2_DECODER_TRACK_OUTPUTS]
        with self._lock:
            masks, iou, score, ptr = self._session("_decoder").run(names, feeds)
        return masks, iou, score, ptr

    def close(self) -> None:
        """Release both sessions (idempotent); waits for a call in progress."""
        with self._lock:
            self._encoder = None
            self._decoder = None

    def __repr__(self) -> str:
        return f"OrtSegmenter(name={self.name!r}, providers={self.providers})"


def _decoder_feeds(
    embedding: ImageEmbedding,
    point_coords: np.ndarray,
    point_labels: np.ndarray,
    mask_input: np.ndarray,
    has_mask_input: np.ndarray,
) -> dict[str, np.ndarray]:
    """The SAM2 decoder graph's inputs by name."""
    return {
        "image_embed": embedding.image_embed,
        "high_res_feats_0": embedding.high_res_feats_0,
        "high_res_feats_1": embedding.high_res_feats_1,
        "point_coords": point_coords,
        "point_labels": point_labels,
        "mask_input": mask_input,
        "has_mask_input": has_mask_input,
    }
