"""SAM2 memory attention + memory encoder graphs on onnxruntime (``SAM2Memory`` protocol)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ImageEmbedding
from ..layout import (
    SAM2_FEAT_SIZE,
    SAM2_MEMORY_ATTENTION_INPUTS,
    SAM2_MEMORY_ATTENTION_OUTPUTS,
    SAM2_MEMORY_ENCODER_INPUTS,
    SAM2_MEMORY_ENCODER_OUTPUTS,
    SAM2_SIZE,
    TRACKING_METADATA_KEY,
)
from .memory import TrackingConfig
from .onnxruntime import (
    TRT_CACHE_SUBDIR,
    OrtSegmenter,
    _short_name,
    choose_providers,
    tensorrt_provider_options,
)

METADATA_KEY = TRACKING_METADATA_KEY
MASK_SHAPE = (1, 1, SAM2_SIZE // 4, SAM2_SIZE // 4)


class OrtMemory:
    """The two memory graphs run with onnxruntime.

    ``config`` (the manifest's ``segmenter.tracking``) wins; else the settings stored in the
    memory attention graph's metadata; else SAM2.1's defaults.
    """

    def __init__(
        self,
        attention_path: str | os.PathLike[str],
        encoder_path: str | os.PathLike[str],
        *,
        config: TrackingConfig | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        fp16: bool = True,
        trt_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeError(
                "onnxruntime is not installed (pip install 'segzero-edge[runtime]')"
            ) from e
        paths = {"memory attention": Path(attention_path), "memory encoder": Path(encoder_path)}
        for role, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"SAM2 {role} ONNX file not found: {path}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        chosen = choose_providers(providers, ort.get_available_providers())
        per_graph: dict[str, list[Any]] = {role: list(chosen) for role in paths}
        if "TensorrtExecutionProvider" in chosen:  # as OrtSegmenter, with the memory profiles
            if trt_cache_dir is None:
                from ..engine_cache import engine_dir

                trt_cache_dir = engine_dir(paths["memory attention"].parent) / TRT_CACHE_SUBDIR
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            i = chosen.index("TensorrtExecutionProvider")
            for role, graph_providers in per_graph.items():
                opts = tensorrt_provider_options(trt_cache_dir, fp16=fp16)
                if role == "memory attention":
                    opts.update(memory_profile_options())
                graph_providers[i] = ("TensorrtExecutionProvider", opts)
        options = ort.SessionOptions()
        # the attention weights grow with the memory (7 frames: 4096 x 28736 floats, 470 MB
        # per layer): give them back after each call instead of keeping them in an arena
        options.enable_cpu_mem_arena = False
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._attention = OrtSegmenter._open(
            ort, paths["memory attention"], options, per_graph["memory attention"]
        )
        self._encoder = OrtSegmenter._open(
            ort, paths["memory encoder"], options, per_graph["memory encoder"]
        )
        OrtSegmenter._check_io(
            self._attention,
            paths["memory attention"],
            SAM2_MEMORY_ATTENTION_INPUTS,
            SAM2_MEMORY_ATTENTION_OUTPUTS,
        )
        OrtSegmenter._check_io(
            self._encoder,
            paths["memory encoder"],
            SAM2_MEMORY_ENCODER_INPUTS,
            SAM2_MEMORY_ENCODER_OUTPUTS,
        )
        if config is None:
            meta = self._attention.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
            source = f"{paths['memory attention']} metadata {METADATA_KEY}"
            config = TrackingConfig.from_json(json.loads(meta), source) if meta else None
        self.config = config or TrackingConfig()
        self._lock = threading.Lock()  # close() waits for a call in progress
        self.providers = list(self._attention.get_providers())
        self.name = f"onnxruntime-{_short_name(self.providers[0])}"

    def attend(
        self,
        embedding: ImageEmbedding,
        memory: np.ndarray,
        memory_tpos: np.ndarray,
        obj_ptrs: np.ndarray,
        obj_ptr_tpos: np.ndarray,
    ) -> np.ndarray:
        """``pix_feat_with_mem [1, 256, 64, 64]`` (see :class:`~.memory.SAM2Memory`)."""
        feeds = check_attention_inputs(memory, memory_tpos, obj_ptrs, obj_ptr_tpos, self.config)
        feeds["image_embed"] = np.asarray(embedding.image_embed, dtype=np.float32)
        with self._lock:
            (out,) = self._session("_attention").run(list(SAM2_MEMORY_ATTENTION_OUTPUTS), feeds)
        return np.asarray(out)

    def encode_memory(
        self,
        embedding: ImageEmbedding,
        mask_logits: np.ndarray,
        object_score_logits: np.ndarray,
        is_mask_from_pts: bool,
    ) -> np.ndarray:
        """``maskmem_features [1, 64, 64, 64]`` float32 of a frame and its chosen mask."""
        feeds = encoder_feeds(mask_logits, object_score_logits, is_mask_from_pts)
        feeds["image_embed"] = np.asarray(embedding.image_embed, dtype=np.float32)
        with self._lock:
            (out,) = self._session("_encoder").run(list(SAM2_MEMORY_ENCODER_OUTPUTS), feeds)
        return np.asarray(out)

    def _session(self, attr: str) -> Any:
        session = getattr(self, attr)
        if session is None:
            raise RuntimeError("this OrtMemory has been closed")
        return session

    def close(self) -> None:
        """Release both sessions (idempotent); waits for a call in progress."""
        with self._lock:
            self._attention = None
            self._encoder = None

    def __repr__(self) -> str:
        return f"OrtMemory(name={self.name!r}, providers={self.providers})"


def memory_profile_options() -> dict[str, str]:
    """onnxruntime TensorRT EP profiles of the memory attention's dynamic inputs (the same
    ranges as ``build-engines``: :data:`~segzero_edge.engine_cache.MEMORY_FRAMES_PROFILE`,
    :data:`~segzero_edge.engine_cache.OBJ_PTRS_PROFILE`); the memory encoder has none."""
    from ..engine_cache import MEMORY_FRAMES_PROFILE, OBJ_PTRS_PROFILE

    side = SAM2_FEAT_SIZE
    tails = {
        "memory": f"x64x{side}x{side}",
        "memory_tpos": "",
        "obj_ptrs": "x256",
        "obj_ptr_tpos": "",
    }
    out = {}
    for k, which in enumerate(("min", "opt", "max")):
        shapes = []
        for name, tail in tails.items():
            profile = MEMORY_FRAMES_PROFILE if name.startswith("memory") else OBJ_PTRS_PROFILE
            shapes.append(f"{name}:{profile[k]}{tail}")
        out[f"trt_profile_{which}_shapes"] = ",".join(shapes)
    return out


def check_attention_inputs(
    memory: np.ndarray,
    memory_tpos: np.ndarray,
    obj_ptrs: np.ndarray,
    obj_ptr_tpos: np.ndarray,
    config: TrackingConfig,
) -> dict[str, np.ndarray]:
    """The memory attention feeds as contiguous float32, or ``ValueError`` naming the input."""
    side, d, c = SAM2_FEAT_SIZE, config.mem_dim, config.hidden_dim
    feeds = {
        "memory": np.ascontiguousarray(memory, dtype=np.float32),
        "memory_tpos": np.ascontiguousarray(memory_tpos, dtype=np.float32),
        "obj_ptrs": np.ascontiguousarray(obj_ptrs, dtype=np.float32),
        "obj_ptr_tpos": np.ascontiguousarray(obj_ptr_tpos, dtype=np.float32),
    }
    n, m = feeds["memory"].shape[0], feeds["obj_ptrs"].shape[0]
    if feeds["memory"].shape[1:] != (d, side, side) or n < 1:
        raise ValueError(f"memory must be [N >= 1, {d}, {side}, {side}], got {memory.shape}")
    if feeds["memory_tpos"].shape != (n,):
        raise ValueError(f"memory_tpos must be [{n}], got {memory_tpos.shape}")
    if feeds["obj_ptrs"].shape[1:] != (c,) or m < 1:
        raise ValueError(f"obj_ptrs must be [M >= 1, {c}], got {obj_ptrs.shape}")
    if feeds["obj_ptr_tpos"].shape != (m,):
        raise ValueError(f"obj_ptr_tpos must be [{m}], got {obj_ptr_tpos.shape}")
    return feeds


def encoder_feeds(
    mask_logits: np.ndarray, object_score_logits: np.ndarray, is_mask_from_pts: bool
) -> dict[str, np.ndarray]:
    """The memory encoder's feeds besides ``image_embed``, checked."""
    mask = np.ascontiguousarray(mask_logits, dtype=np.float32)
    if mask.size != int(np.prod(MASK_SHAPE)):
        raise ValueError(f"mask_logits must be {MASK_SHAPE}, got {np.shape(mask_logits)}")
    score = np.ascontiguousarray(object_score_logits, dtype=np.float32).reshape(1, 1)
    return {
        "mask_logits": mask.reshape(MASK_SHAPE),
        "object_score_logits": score,
        "is_mask_from_pts": np.array([1.0 if is_mask_from_pts else 0.0], dtype=np.float32),
    }
