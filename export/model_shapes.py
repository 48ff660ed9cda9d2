"""The published sizes of the reasoners this project serves, as Hugging Face ``config.json``
dicts (sizes only; token ids and other defaults come from the transformers config class).

One home for these numbers: the memory estimate (:mod:`segzero_export.memory`, through a
meta-device model), the Jetson roofline and the ``--shapes real`` benchmark
(``segzero_bench``) read them from here.

Sources, each model's ``config.json`` on the Hugging Face hub:

- ``qwen25vl-3b`` / ``qwen25vl-7b``: ``Qwen/Qwen2.5-VL-3B-Instruct`` / ``-7B-Instruct``
  (window attention in the vision tower, full attention in blocks 7, 15, 23, 31; 14 px patches);
- ``qwen3vl-2b`` / ``qwen3vl-4b`` / ``qwen3vl-8b``: ``Qwen/Qwen3-VL-2B-Instruct`` / ``-4B-`` /
  ``-8B-Instruct`` (explicit ``head_dim`` 128, interleaved M-RoPE sections 24/20/20; full
  attention in every vision block, 16 px patches, a learned 48 x 48 position grid, deepstack
  mergers fed by vision blocks 5/11/17, 8/16/24 at 8B). Qwen3-VL-2B has 2,127,532,032
  parameters (the hub's count, tied embeddings counted once).
"""

from __future__ import annotations

import copy
from typing import Any

_QWEN25VL_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "window_size": 112,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
_QWEN25VL_ROPE: dict[str, Any] = {
    "rope_type": "default",
    "rope_theta": 1000000.0,
    "mrope_section": [16, 24, 24],
}
_QWEN3VL_ROPE: dict[str, Any] = {
    "rope_type": "default",
    "rope_theta": 5000000.0,
    "mrope_section": [24, 20, 20],
    "mrope_interleaved": True,
}
_QWEN3VL_VISION_SMALL: dict[str, Any] = {  # 2B and 4B
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "deepstack_visual_indexes": [5, 11, 17],
}
_QWEN3VL_VISION_8B: dict[str, Any] = {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "deepstack_visual_indexes": [8, 16, 24],
}
_QWEN3VL_VISION_COMMON: dict[str, Any] = {
    "hidden_act": "gelu_pytorch_tanh",
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
}


def _qwen25vl(text: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "text_config": {
            **text,
            "vocab_size": text.get("vocab_size", 151936),
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": dict(_QWEN25VL_ROPE),
            "model_type": "qwen2_5_vl_text",
        },
        "vision_config": {**_QWEN25VL_VISION, "out_hidden_size": text["hidden_size"]},
        "tie_word_embeddings": text["tie_word_embeddings"],
    }


def _qwen3vl(text: dict[str, Any], vision: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "text_config": {
            **text,
            "vocab_size": 151936,
            "head_dim": 128,
            "num_key_value_heads": 8,
            "hidden_act": "silu",
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "attention_bias": False,
            "rope_parameters": dict(_QWEN3VL_ROPE),
            "model_type": "qwen3_vl_text",
        },
        "vision_config": {
            **vision,
            **_QWEN3VL_VISION_COMMON,
            "out_hidden_size": text["hidden_size"],
        },
        "tie_word_embeddings": text["tie_word_embeddings"],
    }


_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen25vl-3b": _qwen25vl(
        {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "tie_word_embeddings": True,
        }
    ),
    "qwen25vl-7b": _qwen25vl(
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "tie_word_embeddings": False,
        }
    ),
    "qwen3vl-2b": _qwen3vl(
        {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "tie_word_embeddings": True,
        },
        _QWEN3VL_VISION_SMALL,
    ),
    "qwen3vl-4b": _qwen3vl(
        {
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "tie_word_embeddings": True,
        },
        _QWEN3VL_VISION_SMALL,
    ),
    "qwen3vl-8b": _qwen3vl(
        {
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "tie_word_embeddings": False,
        },
        _QWEN3VL_VISION_8B,
    ),
}

DEFAULT_REASONER_SHAPES = "qwen25vl-3b"
"""The size the ``--shapes real`` benchmark runs unless told (Seg-Zero-3B's)."""
SHAPE_NAMES: tuple[str, ...] = tuple(_CONFIGS)
"""Every known size: ``qwen25vl-3b``, ``qwen25vl-7b``, ``qwen3vl-2b``, ``qwen3vl-4b``,
``qwen3vl-8b``."""

DISPLAY_NAMES: dict[str, str] = {
    "qwen25vl-3b": "Qwen2.5-VL-3B",
    "qwen25vl-7b": "Qwen2.5-VL-7B",
    "qwen3vl-2b": "Qwen3-VL-2B",
    "qwen3vl-4b": "Qwen3-VL-4B",
    "qwen3vl-8b": "Qwen3-VL-8B",
}


def published_config(name: str) -> dict[str, Any]:
    """A fresh copy of the ``config.json`` dict of ``name`` (one of :data:`SHAPE_NAMES`).

    Raises ``ValueError`` naming the known sizes for anything else.
    """
    if name not in _CONFIGS:
        raise ValueError(f"unknown reasoner shape {name!r}; known: {', '.join(SHAPE_NAMES)}")
    return copy.deepcopy(_CONFIGS[name])


def is_qwen3vl(config: dict[str, Any]) -> bool:
    """True for a Qwen3-VL ``config.json`` dict (``model_type`` ``qwen3_vl``)."""
    return config.get("model_type") == "qwen3_vl"


__all__ = [
    "DEFAULT_REASONER_SHAPES",
    "DISPLAY_NAMES",
    "SHAPE_NAMES",
    "is_qwen3vl",
    "published_config",
]
