"""onnxruntime sessions of the SAM2 graphs, as the segmenter and the video memory open them.

One home for: importing onnxruntime, choosing execution providers (TensorRT > CUDA > CPU),
the options of onnxruntime's TensorRT execution provider (FP16, engine and timing caches,
optimisation profiles), session options (threads, spinning), opening a graph with a clear
error, and checking that a graph has this project's inputs and outputs. Used by
:class:`~.onnxruntime.OrtSegmenter` and :class:`~.memory_onnxruntime.OrtMemory`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..layout import SAM2_POINT_INPUTS

TENSORRT_EP = "TensorrtExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PROVIDER_PREFERENCE = (TENSORRT_EP, "CUDAExecutionProvider", CPU_EP)
TRT_CACHE_SUBDIR = "onnxruntime-trt"  # in bundle/engines/<device fingerprint>/


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or ``RuntimeError`` saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeError(
            "onnxruntime is not installed (pip install 'segzero-edge[runtime]')"
        ) from e
    return ort


def backend_name(providers: Sequence[str]) -> str:
    """``onnxruntime-<first provider>``, e.g. ``onnxruntime-cpu``, ``onnxruntime-tensorrt``."""
    return "onnxruntime-" + providers[0].removesuffix("ExecutionProvider").lower()


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The requested providers (all must be available), or TensorRT > CUDA > CPU.

    Raises ``ValueError`` naming the missing providers, or for an empty request.
    """
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


def tensorrt_cache_dir(trt_cache_dir: str | os.PathLike[str] | None, graph_dir: Path) -> Path:
    """Where onnxruntime's TensorRT EP keeps its engines (created): ``trt_cache_dir``, by
    default ``engines/<device fingerprint>/onnxruntime-trt`` in ``graph_dir`` (the bundle)."""
    if trt_cache_dir is None:
        from ..engine_cache import engine_dir

        trt_cache_dir = engine_dir(graph_dir) / TRT_CACHE_SUBDIR
    path = Path(trt_cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def providers_per_graph(
    chosen: Sequence[str], tensorrt_options: Mapping[str, dict[str, Any]]
) -> dict[str, list[Any]]:
    """Per graph role (the keys of ``tensorrt_options``), the ``chosen`` providers with the
    TensorRT EP given that role's options (onnxruntime's ``(name, options)`` form)."""
    out: dict[str, list[Any]] = {}
    for role, options in tensorrt_options.items():
        providers: list[Any] = list(chosen)
        if TENSORRT_EP in providers:
            providers[providers.index(TENSORRT_EP)] = (TENSORRT_EP, options)
        out[role] = providers
    return out


def check_graph_files(paths: Mapping[str, Path], threads: int | None) -> None:
    """``FileNotFoundError`` naming the first missing ONNX file of ``paths`` ({role: path}),
    ``ValueError`` for ``threads < 1``."""
    for role, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"SAM2 {role} ONNX file not found: {path}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


def session_options(
    ort: Any, threads: int | None, *, spin_wait: bool | None = None, cpu_mem_arena: bool = True
) -> Any:
    """``onnxruntime.SessionOptions``: ``threads`` intra-op threads (one inter-op thread),
    pool threads spinning between runs or not (``spin_wait``; None leaves onnxruntime's
    default), the CPU memory arena on or off."""
    options = ort.SessionOptions()
    if not cpu_mem_arena:
        options.enable_cpu_mem_arena = False
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spin_wait is not None:
        flag = "1" if spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return options


def open_session(ort: Any, path: Path, options: Any, providers: Sequence[Any]) -> Any:
    """``onnxruntime.InferenceSession`` of ``path``, or :class:`BackendError` naming the file
    and onnxruntime's first line of complaint."""
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"onnxruntime cannot load {path}: {first}") from e


def check_io(session: Any, path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """``ValueError`` unless ``session`` has exactly ``inputs`` and at least ``outputs``."""
    got_in = tuple(i.name for i in session.get_inputs())
    got_out = tuple(o.name for o in session.get_outputs())
    if set(got_in) != set(inputs) or not set(outputs) <= set(got_out):
        raise ValueError(
            f"{path} is not a SAM2 graph of this project: inputs {got_in}, outputs "
            f"{got_out}; expected inputs {tuple(inputs)} and outputs {tuple(outputs)} "
            "(export it with segzero_export.sam2_onnx.export_sam2)"
        )


def open_graph(
    ort: Any,
    path: Path,
    options: Any,
    providers: Sequence[Any],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> Any:
    """:func:`open_session` then :func:`check_io`."""
    session = open_session(ort, path, options, providers)
    check_io(session, path, inputs, outputs)
    return session


__all__ = [
    "PROVIDER_PREFERENCE",
    "TRT_CACHE_SUBDIR",
    "backend_name",
    "check_graph_files",
    "check_io",
    "choose_providers",
    "import_onnxruntime",
    "open_graph",
    "open_session",
    "parse_profile_shapes",
    "providers_per_graph",
    "session_options",
    "tensorrt_cache_dir",
    "tensorrt_provider_options",
]
