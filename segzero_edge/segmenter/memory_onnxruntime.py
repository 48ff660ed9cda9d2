"""SAM2 memory attention + memory encoder graphs on onnxruntime (``SAM2Memory`` protocol).

Sessions, providers and the TensorRT execution provider's options: :mod:`.ort_session`.
"""

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
    TRACKING_METADATA_KEY,
)
from .memory import TrackingConfig, attention_feeds, encoder_feeds
from .ort_session import (
    TENSORRT_EP,
    backend_name,
    check_graph_files,
    choose_providers,
    import_onnxruntime,
    open_graph,
    providers_per_graph,
    session_options,
    tensorrt_cache_dir,
    tensorrt_provider_options,
)


class OrtMemory:
    """The two memory graphs run with onnxruntime.

    ``config`` (the manifest's ``segmenter.tracking``) wins; else the settings stored in the
    memory attention graph's metadata; else SAM2.1's defaults. ``close()`` waits for a call
    in progress on another thread; later calls raise ``RuntimeError``.
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
        ort = import_onnxruntime()
        paths = {"memory attention": Path(attention_path), "memory encoder": Path(encoder_path)}
        check_graph_files(paths, threads)
        chosen = choose_providers(providers, ort.get_available_providers())
        trt_options: dict[str, dict[str, Any]] = {role: {} for role in paths}
        if TENSORRT_EP in chosen:  # as OrtSegmenter, with the memory profiles
            cache = tensorrt_cache_dir(trt_cache_dir, paths["memory attention"].parent)
            for role in paths:
                trt_options[role] = tensorrt_provider_options(cache, fp16=fp16)
            trt_options["memory attention"].update(memory_profile_options())
        per_graph = providers_per_graph(chosen, trt_options)
        # the attention weights grow with the memory (7 frames: 4096 x 28736 floats, 470 MB
        # per layer): give them back after each call instead of keeping them in an arena
        options = session_options(ort, threads, cpu_mem_arena=False)
        self._attention: Any = open_graph(
            ort, paths["memory attention"], options, per_graph["memory attention"],
            SAM2_MEMORY_ATTENTION_INPUTS, SAM2_MEMORY_ATTENTION_OUTPUTS,
        )  # fmt: skip
        self._encoder: Any = open_graph(
            ort, paths["memory encoder"], options, per_graph["memory encoder"],
            SAM2_MEMORY_ENCODER_INPUTS, SAM2_MEMORY_ENCODER_OUTPUTS,
        )  # fmt: skip
        if config is None:
            key = TRACKING_METADATA_KEY
            meta = self._attention.get_modelmeta().custom_metadata_map.get(key)
            source = f"{paths['memory attention']} metadata {key}"
            config = TrackingConfig.from_json(json.loads(meta), source) if meta else None
        self.config = config or TrackingConfig()
        self._lock = threading.Lock()  # close() waits for a call in progress
        self.providers: list[str] = list(self._attention.get_providers())
        self.name = backend_name(self.providers)

    def attend(
        self,
        embedding: ImageEmbedding,
        memory: np.ndarray,
        memory_tpos: np.ndarray,
        obj_ptrs: np.ndarray,
        obj_ptr_tpos: np.ndarray,
    ) -> np.ndarray:
        """``pix_feat_with_mem [1, 256, 64, 64]`` (see :class:`~.memory.SAM2Memory`)."""
        feeds = attention_feeds(memory, memory_tpos, obj_ptrs, obj_ptr_tpos, self.config)
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

    def _session(self, role: str) -> Any:
        session = self._attention if role == "_attention" else self._encoder
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
