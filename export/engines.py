"""Build a bundle's SAM2 TensorRT engines, on the device that runs them.

``build_engines(bundle)`` parses ``sam2_encoder.onnx`` / ``sam2_decoder.onnx`` (and, when the
bundle has them, the video-memory graphs ``sam2_memory_attention.onnx`` /
``sam2_memory_encoder.onnx``) with TensorRT's ONNX parser and writes this device's engine
folder (see :mod:`segzero_edge.engine_cache`,
whose staleness rules, build flags and ``engines.json`` schema this module follows).

FP16 by default, with normalisation layers (TensorRT ``NORMALIZATION``, and the
ReduceMean/Pow/Sqrt/Div chain of SAM2's hand-written ``LayerNorm2d``) pinned to FP32 under
``OBEY_PRECISION_CONSTRAINTS``; ``fp32_layers`` pins more layers by name pattern. An engine
is rebuilt when the TensorRT version, the device, its ONNX file or the build flags change.
TensorRT comes with JetPack (not pip); without it, or with a TensorRT older than 10
(JetPack 6.0 ships 8.6: :data:`segzero_edge.platform.trt.MIN_TENSORRT`),
:class:`~segzero_edge.errors.TensorRTUnavailable` is raised before any work. Needs no torch.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segzero_edge._version import __version__
from segzero_edge.engine_cache import (
    META_SCHEMA,
    POINTS_PROFILE,
    PROMPTS_PROFILE,
    TIMING_CACHE_FILE,
    BuildFlags,
    engine_dir,
    onnx_sha256,
    plan_path,
    read_meta,
    stale_reason,
)
from segzero_edge.errors import TensorRTUnavailable
from segzero_edge.fileio import atomic_path
from segzero_edge.layout import (
    ENGINE_META_FILE,
    SAM2_DECODER,
    SAM2_ENCODER,
    SAM2_GRAPHS,
    SAM2_MEMORY_ATTENTION,
    SAM2_MEMORY_ENCODER,
    SAM2_MEMORY_GRAPHS,
    SAM2_POINT_INPUTS,
)
from segzero_edge.platform.fingerprint import (
    ENV_FINGERPRINT,
    device_fingerprint,
    has_gpu_identity,
)
from segzero_edge.platform.trt import import_tensorrt, tensorrt_logger

if TYPE_CHECKING:
    import tensorrt

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
NORM_CHAIN_DEPTH = 3  # ReduceMean -> Add(eps) -> Sqrt -> Div in a hand-written LayerNorm
_NORM_CHAIN = frozenset({"ELEMENTWISE", "UNARY"})


class EngineBuildError(RuntimeError):
    """TensorRT could not parse an ONNX graph or build an engine from it."""


@dataclass
class EngineSet:
    """The engine folder of this device and what ``build_engines`` did in it."""

    directory: Path
    fingerprint: str
    tensorrt_version: str
    encoder: Path
    decoder: Path
    built: dict[str, str] = field(default_factory=dict)  # engine name -> why it was (re)built
    seconds: dict[str, float] = field(default_factory=dict)
    memory_attention: Path | None = None  # None: the bundle has no memory graphs
    memory_encoder: Path | None = None

    @property
    def plans(self) -> tuple[Path, Path]:
        return self.encoder, self.decoder


@dataclass(frozen=True)
class LayerDesc:
    """What the FP32 selection needs to know about one network layer."""

    name: str
    type: str  # TensorRT LayerType name, e.g. "REDUCE"
    float_output: bool  # every output is a float tensor (precision can be set)
    inputs_from: tuple[int, ...] = ()  # indices of the layers producing its inputs


def record_engine(
    meta: dict[str, Any],
    name: str,
    *,
    plan: Path,
    onnx_name: str,
    onnx_sha256: str,
    fingerprint: str,
    tensorrt_version: str,
    flags: BuildFlags,
    **extra: Any,
) -> dict[str, Any]:
    """Enter a just-written ``plan`` into ``meta`` (the ``engines.json`` content), in place."""
    same = (META_SCHEMA, fingerprint, tensorrt_version)
    if (meta.get("schema_version"), meta.get("fingerprint"), meta.get("tensorrt_version")) != same:
        meta.clear()  # entries of other engines were built for something else: drop them
    meta.update(
        schema_version=META_SCHEMA,
        fingerprint=fingerprint,
        tensorrt_version=tensorrt_version,
        segzero_edge_version=__version__,
    )
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta.setdefault("engines", {})[name] = {
        "plan": plan.name,
        "plan_size": plan.stat().st_size,
        "onnx": onnx_name,
        "onnx_sha256": onnx_sha256,
        "flags": flags.to_json(name),
        "built_at": now,
        **extra,
    }
    return meta


def matches_pattern(name: str, type_name: str, patterns: Iterable[str]) -> bool:
    """``fnmatch`` on the layer name (case-insensitive); ``type:SOFTMAX`` matches a layer type."""
    lname = name.lower()
    for pattern in patterns:
        p = pattern.strip().lower()
        if p.startswith("type:"):
            if fnmatch.fnmatchcase(type_name.lower(), p[5:]):
                return True
        elif fnmatch.fnmatchcase(lname, p) or fnmatch.fnmatchcase(lname, f"*{p}*"):
            return True
    return False


def select_fp32_layers(layers: Sequence[LayerDesc], patterns: Iterable[str] = ()) -> set[int]:
    """Indices of the layers to pin to FP32 (``layers`` in topological order).

    Normalisation layers are pinned. From each reduce layer, element-wise/unary layers
    downstream are pinned up to ``NORM_CHAIN_DEPTH`` steps (the Sub/Pow/Add/Sqrt/Div of a
    hand-written LayerNorm such as SAM2's ``LayerNorm2d``). Plus any layer matching
    ``patterns`` (see :func:`matches_pattern`).
    Layers with non-float outputs (shape arithmetic) are never pinned.
    """
    pats = tuple(patterns)
    depth: dict[int, int] = {}  # pinned layer -> steps from the reduce that began its chain
    for i, layer in enumerate(layers):
        if not layer.float_output:
            continue
        if layer.type == "REDUCE":
            depth[i] = 0  # starts a hand-written normalisation chain
        elif layer.type == "NORMALIZATION":
            depth[i] = NORM_CHAIN_DEPTH  # self-contained: pinned, does not extend a chain
        elif layer.type in _NORM_CHAIN:
            near = [depth[j] for j in layer.inputs_from if j in depth]
            if near and max(near) < NORM_CHAIN_DEPTH:  # max: the Div joining two paths ends it
                depth[i] = max(near) + 1
        if i not in depth and pats and matches_pattern(layer.name, layer.type, pats):
            depth[i] = NORM_CHAIN_DEPTH  # pinned, but does not extend a chain
    return set(depth)


def _check_profile(what: str, profile: tuple[int, int, int]) -> None:
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"{what} profile must satisfy 1 <= min <= opt <= max, got {profile}")


def dynamic_profile(
    name: str,
    shape: Sequence[int],
    points_profile: tuple[int, int, int],
    prompts_profile: tuple[int, int, int] = PROMPTS_PROFILE,
) -> tuple[list[int], list[int], list[int]]:
    """(min, opt, max) shapes of a network input.

    Only the prompt (batch, dim 0) and point (dim 1) dimensions of ``point_coords`` /
    ``point_labels`` may be dynamic; a static dimension keeps its size (a decoder exported
    before the batch axis has a fixed batch of 1).
    """
    if (
        name not in SAM2_POINT_INPUTS
        or len(shape) < 2
        or any(d < 0 for i, d in enumerate(shape) if i > 1)
    ):
        raise EngineBuildError(
            f"input {name!r} has dynamic shape {tuple(shape)}; only the prompt and point "
            f"dimensions (dims 0 and 1) of {SAM2_POINT_INPUTS} may be dynamic. Re-export the ONNX "
            "graphs with segzero_export.sam2_onnx.export_sam2"
        )
    _check_profile("points", points_profile)
    _check_profile("prompts", prompts_profile)
    shapes = []
    for n_prompts, n_points in zip(prompts_profile, points_profile, strict=True):
        dims = [int(d) for d in shape]
        if dims[0] < 0:
            dims[0] = n_prompts
        if dims[1] < 0:
            dims[1] = n_points
        shapes.append(dims)
    return shapes[0], shapes[1], shapes[2]


def input_profile(
    name: str, shape: Sequence[int], flags: BuildFlags
) -> tuple[list[int], list[int], list[int]]:
    """(min, opt, max) shapes of a network input with dynamic dimensions: the decoder's point
    dimension (:func:`dynamic_profile`), or dimension 0 of the memory-attention inputs
    (memory frames / object pointers, ``flags.memory_frames_profile`` / ``obj_ptrs_profile``).
    """
    profile = flags.profile(name)
    if profile is None:
        return dynamic_profile(name, shape, flags.points_profile, flags.prompts_profile)
    if len(shape) < 1 or any(d < 0 for d in shape[1:]):
        raise EngineBuildError(
            f"input {name!r} has dynamic shape {tuple(shape)}; only dimension 0 may be dynamic"
        )
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"profile of {name} must satisfy 1 <= min <= opt <= max, got {profile}")
    return ([lo, *shape[1:]], [opt, *shape[1:]], [hi, *shape[1:]])


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write ``engines.json`` atomically."""
    with atomic_path(directory / ENGINE_META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _write_bytes(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(memoryview(data))


def _layer_descs(network: tensorrt.INetworkDefinition) -> list[LayerDesc]:
    import tensorrt as trt

    floats = {trt.float32, trt.float16}
    producer: dict[str, int] = {}
    descs = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        srcs = []
        for k in range(layer.num_inputs):
            t = layer.get_input(k)
            if t is not None and t.name in producer:
                srcs.append(producer[t.name])
        descs.append(
            LayerDesc(
                name=layer.name,
                type=layer.type.name,
                float_output=bool(outs)
                and all(o.dtype in floats and not o.is_shape_tensor for o in outs),
                inputs_from=tuple(srcs),
            )
        )
        for o in outs:
            producer[o.name] = i
    return descs


def pin_fp32(network: tensorrt.INetworkDefinition, patterns: Iterable[str]) -> int:
    """Set precision and output types of the selected layers to FP32; how many were pinned."""
    import tensorrt as trt

    chosen = select_fp32_layers(_layer_descs(network), patterns)
    for i in sorted(chosen):
        layer = network.get_layer(i)
        layer.precision = trt.float32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, trt.float32)
    return len(chosen)


def _parse_onnx(
    builder: tensorrt.Builder, logger: tensorrt.ILogger, onnx: Path
) -> tuple[tensorrt.INetworkDefinition, tensorrt.OnnxParser]:
    """The network of ``onnx``, or :class:`EngineBuildError` listing every parser error."""
    import tensorrt as trt

    # TensorRT 10 networks are explicit-batch only (the EXPLICIT_BATCH flag is deprecated and
    # ignored there); TensorRT 8.6 would make an implicit-batch network of flags 0, which its
    # ONNX parser rejects: import_tensorrt() refuses TensorRT < 10 before this runs.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes(), str(onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        listing = "\n  ".join(errors) or "(no parser error recorded)"
        raise EngineBuildError(
            f"TensorRT {trt.__version__} cannot parse {onnx} ({len(errors)} error(s)):\n  {listing}"
        )
    return network, parser  # the parser must outlive the network's weights


def apply_timing_cache(config: tensorrt.IBuilderConfig, cache_path: Path) -> bool:
    """Give the builder the timing cache at ``cache_path``; True when the saved one was used.

    Never with ``ignore_mismatch``: timings measured on another GPU (a cache copied from an
    AGX Orin to an Orin Nano) would pick tactics for the wrong device. A cache TensorRT
    rejects as made elsewhere is replaced by an empty one (and overwritten after the build).
    """
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    if cache_bytes:
        cache = config.create_timing_cache(cache_bytes)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return True
        log.warning("%s was made on another device: starting a new timing cache", cache_path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def _build_one(
    onnx: Path,
    plan: Path,
    cache_path: Path,
    flags: BuildFlags,
    workspace_mb: int,
) -> dict[str, Any]:
    """Parse, configure (FP16 + FP32 pins, point profile, timing cache), build, write."""
    import tensorrt as trt

    logger = tensorrt_logger()  # the process's one logger, shared with the runtime
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(builder, logger, onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    pinned = 0
    if flags.fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building %s in FP16 anyway", onnx.name)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = pin_fp32(network, flags.fp32_layers)
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(int(tensor.shape[k]) for k in range(len(tensor.shape)))
        if any(d < 0 for d in shape):
            profile = profile or builder.create_optimization_profile()
            lo, opt, hi = input_profile(tensor.name, shape, flags)
            profile.set_shape(tensor.name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
    if profile is not None:
        config.add_optimization_profile(profile)
    apply_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} failed to build an engine from {onnx} (see its log "
            "above); try --fp32-layers to pin more layers, or a larger --workspace-mb"
        )
    _write_bytes(plan, serialized)
    _write_bytes(cache_path, config.get_timing_cache().serialize())
    return {"fp32_layers_pinned": pinned, "layers": network.num_layers}


def build_engines(
    bundle_dir: str | os.PathLike[str],
    *,
    fp32_layers: Sequence[str] = (),
    fp16: bool = True,
    force: bool = False,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    points_profile: tuple[int, int, int] = POINTS_PROFILE,
    prompts_profile: tuple[int, int, int] = PROMPTS_PROFILE,
    progress: bool = True,
) -> EngineSet:
    """Build (or keep, when current) this device's SAM2 engines for ``bundle_dir``: encoder
    and decoder, plus the memory attention / memory encoder when the bundle has them.

    ``points_profile`` / ``prompts_profile``: the decoder's (min, opt, max) points per prompt
    and prompts per call (objects of one answer decoded together).
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"bundle folder not found: {root}")
    onnx_files = {name: root / f"{name}.onnx" for name in SAM2_GRAPHS}
    for path in onnx_files.values():
        if not path.is_file():
            raise FileNotFoundError(f"SAM2 ONNX file missing from the bundle: {path}")
    memory = [n for n in SAM2_MEMORY_GRAPHS if (root / f"{n}.onnx").is_file()]
    if len(memory) == 1:
        raise FileNotFoundError(
            f"the bundle has {memory[0]}.onnx but not its pair; re-export the bundle"
        )
    onnx_files.update({name: root / f"{name}.onnx" for name in memory})
    if workspace_mb < 1:
        raise ValueError(f"workspace_mb must be >= 1, got {workspace_mb}")
    flags = BuildFlags(
        fp16=fp16,
        fp32_layers=tuple(fp32_layers),
        points_profile=points_profile,
        prompts_profile=prompts_profile,
    )
    dynamic_profile(SAM2_POINT_INPUTS[0], (-1, -1, 2), points_profile, prompts_profile)  # validate
    identified, gpu_why = has_gpu_identity()
    if not identified:
        raise EngineBuildError(
            f"cannot identify this device's GPU ({gpu_why}): the engines would be stored under "
            f"{device_fingerprint()!r}, where the runtime on a GPU never looks. On a Jetson "
            "this reads /proc/device-tree; elsewhere install cuda-python matching the driver "
            f"(JetPack 6: pip install 'cuda-python>=12.6,<13') or set ${ENV_FINGERPRINT}"
        )
    trt_version = str(import_tensorrt().__version__)
    fingerprint = device_fingerprint()
    out = engine_dir(root, fingerprint)
    out.mkdir(parents=True, exist_ok=True)
    meta = read_meta(out)
    result = EngineSet(
        out, fingerprint, trt_version, plan_path(out, SAM2_ENCODER), plan_path(out, SAM2_DECODER)
    )
    if memory:
        result.memory_attention = plan_path(out, SAM2_MEMORY_ATTENTION)
        result.memory_encoder = plan_path(out, SAM2_MEMORY_ENCODER)
    hashes = {name: onnx_sha256(root, path.name) for name, path in onnx_files.items()}
    todo: dict[str, str] = {}
    for name in onnx_files:
        why = stale_reason(
            name, meta, plan=plan_path(out, name), onnx_sha256=hashes[name],
            tensorrt_version=trt_version, fingerprint=fingerprint, flags=flags,
        )  # fmt: skip
        if force or why:
            todo[name] = why or "--force"
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="TensorRT engines", unit="engine", disable=not progress)
    try:
        for name, why in todo.items():
            bar.set_postfix_str(f"{name} ({why})")
            log.info("building %s.plan: %s", name, why)
            t0 = time.perf_counter()
            stats = _build_one(
                onnx_files[name],
                plan_path(out, name),
                out / TIMING_CACHE_FILE,
                flags,
                workspace_mb,
            )
            seconds = time.perf_counter() - t0
            record_engine(
                meta,
                name,
                plan=plan_path(out, name),
                onnx_name=onnx_files[name].name,
                onnx_sha256=hashes[name],
                fingerprint=fingerprint,
                tensorrt_version=trt_version,
                flags=flags,
                workspace_mb=workspace_mb,
                build_seconds=round(seconds, 1),
                **stats,
            )
            write_meta(out, meta)
            result.built[name] = why
            result.seconds[name] = seconds
            bar.update()
    finally:
        bar.close()
    return result


__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "POINTS_PROFILE",
    "PROMPTS_PROFILE",
    "BuildFlags",
    "EngineBuildError",
    "EngineSet",
    "LayerDesc",
    "TensorRTUnavailable",
    "apply_timing_cache",
    "build_engines",
    "dynamic_profile",
    "input_profile",
    "matches_pattern",
    "pin_fp32",
    "record_engine",
    "select_fp32_layers",
    "write_meta",
]
