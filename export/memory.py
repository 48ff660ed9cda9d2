"""Memory estimate of a bundle on a target device, checked before and after export.

Figures are estimates: weights at their stored precision, the KV cache at f16 for the
context, llama.cpp / TensorRT work buffers, and a fixed runtime overhead (CUDA context,
Python, onnxruntime). They decide whether a bundle is refused for a target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segzero_edge.layout import (
    MMPROJ_FILE,
    REASONER_FILE,
    SAM2_DECODER_FILE,
    SAM2_ENCODER_FILE,
    SAM2_MEMORY_FILES,
)
from segzero_edge.layout import sam2_size as sam2_size_key

from .hf_source import read_config, safetensors_files
from .quantize import QUANT_TYPES, quant_type
from .targets import Target

SAM2_PARAMS_M: dict[str, tuple[float, float]] = {
    # size: (encoder, decoder) parameters in millions of the two exported graphs' modules
    # (segzero_export.sam2_onnx.SAM2Encoder / SAM2Decoder; Meta's published totals, 38.9 M for
    # tiny ... 224.4 M for large, include the video memory modules the bundle leaves out).
    # Counted on sam2 1.1.0's SAM2.1 configs.
    "tiny": (27.2, 4.2),
    "small": (34.3, 4.2),
    "base_plus": (69.1, 4.2),
    "large": (212.7, 4.2),
}
SAM2_WORK_GB = {"tiny": 0.40, "small": 0.45, "base_plus": 0.60, "large": 1.00}
REASONER_WORK_GB = 0.50
RUNTIME_OVERHEAD_GB = 0.60
GB = 1e9


@dataclass
class MemoryEstimate:
    """Estimated resident memory in GB, by part, and the target's budget."""

    reasoner_weights: float
    kv_cache: float
    reasoner_work: float
    segmenter_weights: float
    segmenter_work: float
    overhead: float
    budget: float
    target: str

    @property
    def total(self) -> float:
        return (
            self.reasoner_weights
            + self.kv_cache
            + self.reasoner_work
            + self.segmenter_weights
            + self.segmenter_work
            + self.overhead
        )

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def to_json(self) -> dict[str, float | str | bool]:
        return {**asdict(self), "total": round(self.total, 3), "fits": self.fits}

    def explain(self) -> str:
        parts = ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}"
            for k, v in asdict(self).items()
            if isinstance(v, float) and k != "budget"
        )
        return (
            f"estimated {self.total:.2f} GB ({parts}) against the {self.budget:.2f} GB budget "
            f"of {self.target}"
        )


def safetensors_param_counts(model_dir: Path) -> tuple[int, int]:
    """``(text, vision)`` parameter counts of a checkpoint's safetensors shards.

    Only the headers are read (``safetensors.safe_open`` slices, no tensor data). Raises
    ``FileNotFoundError`` when the folder has no safetensors weights.
    """
    from safetensors import safe_open

    text = vision = 0
    for f in safetensors_files(Path(model_dir)):
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                count = 1
                for d in st.get_slice(name).get_shape():
                    count *= int(d)
                if "visual" in name:
                    vision += count
                else:
                    text += count
    return text, vision


def config_param_counts(config: dict) -> tuple[int, int]:
    """``(text, vision)`` parameter counts of a Qwen2.5-VL or Qwen3-VL config (by
    ``model_type``), from a meta-device model.

    No weights are read or allocated: this serves hub ids before download and tests.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    if config.get("model_type") == "qwen3_vl":
        cfg: Any = Qwen3VLConfig.from_dict(config)
        cls: Any = Qwen3VLForConditionalGeneration
    else:
        cfg, cls = Qwen2_5_VLConfig.from_dict(config), Qwen2_5_VLForConditionalGeneration
    with torch.device("meta"):
        model = cls(cfg)
    text = vision = 0
    for name, p in model.named_parameters(remove_duplicate=True):
        if "visual" in name:
            vision += p.numel()
        else:
            text += p.numel()
    return text, vision


def kv_cache_gb(config: dict, n_ctx: int) -> float:
    """f16 K and V for ``n_ctx`` tokens over every layer."""
    tc = config.get("text_config", config)
    layers = int(tc["num_hidden_layers"])
    heads = int(tc["num_attention_heads"])
    kv_heads = int(tc.get("num_key_value_heads", heads))
    head_dim = int(tc.get("head_dim") or tc["hidden_size"] // heads)
    return n_ctx * layers * 2 * kv_heads * head_dim * 2 / GB


def sam2_size_name(variant: str) -> str:
    """``tiny`` / ``small`` / ``base_plus`` / ``large``; an unknown name counts as ``large``,
    so the budget check errs on the safe side."""
    try:
        return sam2_size_key(variant)
    except ValueError:
        return "large"


def estimate(
    target: Target,
    *,
    reasoner_weights_gb: float,
    segmenter_weights_gb: float,
    sam2_variant: str,
    kv_gb: float,
) -> MemoryEstimate:
    """The estimate from weight and KV-cache sizes in GB (1e9 bytes), adding the fixed work
    buffers of the reasoner and of the SAM2 variant and the runtime overhead."""
    return MemoryEstimate(
        reasoner_weights=reasoner_weights_gb,
        kv_cache=kv_gb,
        reasoner_work=REASONER_WORK_GB,
        segmenter_weights=segmenter_weights_gb,
        segmenter_work=SAM2_WORK_GB[sam2_size_name(sam2_variant)],
        overhead=RUNTIME_OVERHEAD_GB,
        budget=target.budget_gb,
        target=target.name,
    )


def estimate_before_export(
    target: Target, model_dir: Path, quant: str, sam2_variant: str, n_ctx: int
) -> MemoryEstimate:
    """Estimate from the HF checkpoint's parameter counts and the SAM2 variant's size.

    ``quant``: a :data:`segzero_export.quantize.QUANT_TYPES` name; ``n_ctx``: tokens of KV
    cache. Raises ``FileNotFoundError`` / ``ValueError`` for a folder without a valid
    config.json or safetensors weights, ``ValueError`` for an unknown ``quant``.
    """
    config = read_config(Path(model_dir))
    return estimate_from_config(
        target, config, quant, sam2_variant, n_ctx, counts=safetensors_param_counts(model_dir)
    )


def estimate_from_config(
    target: Target,
    config: dict,
    quant: str,
    sam2_variant: str,
    n_ctx: int,
    counts: tuple[int, int] | None = None,
) -> MemoryEstimate:
    """Estimate from a config (parameter counts from ``counts`` or a meta-device model)."""
    text, vision = counts if counts is not None else config_param_counts(config)
    return estimate(
        target,
        reasoner_weights_gb=(text * QUANT_TYPES[quant_type(quant)].bits_per_weight / 8 + vision * 2)
        / GB,
        segmenter_weights_gb=sum(SAM2_PARAMS_M[sam2_size_name(sam2_variant)]) * 1e6 * 2 / GB,
        sam2_variant=sam2_variant,
        kv_gb=kv_cache_gb(config, n_ctx),
    )


def estimate_from_files(
    target: Target, files: dict[str, Path], config: dict, sam2_variant: str, n_ctx: int
) -> MemoryEstimate:
    """Estimate from the exported files (SAM2 weights counted at FP16: half the FP32 ONNX;
    the video-memory graphs included when present)."""
    size = {k: Path(p).stat().st_size / GB for k, p in files.items()}
    graphs = (SAM2_ENCODER_FILE, SAM2_DECODER_FILE, *SAM2_MEMORY_FILES)
    sam2 = sum(size.get(name, 0.0) for name in graphs)
    return estimate(
        target,
        reasoner_weights_gb=size[REASONER_FILE] + size[MMPROJ_FILE],
        segmenter_weights_gb=sam2 / 2,
        sam2_variant=sam2_variant,
        kv_gb=kv_cache_gb(config, n_ctx),
    )
