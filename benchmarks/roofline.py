"""Roofline ceilings for the pipeline's stages on the Jetson Orin targets (NVIDIA data sheets).

A stage cannot finish sooner than its arithmetic at the device's peak FP16 rate, nor sooner
than the bytes it must read at the device's memory bandwidth:
``floor = max(flops / peak_flops, bytes / bandwidth)``. Decode is bandwidth-bound: each
generated token reads every weight it multiplies (the whole text model except the embedding
table, of which one row is read) plus the KV cache so far. Prefill, the vision encoder and
SAM2 are compute-bound. A measured time divided into its floor is the fraction of the
ceiling reached (1.0 = at the roofline). No torch: bits per weight come from the exporter's
one list of quantization types (``segzero_export.quantize.QUANT_TYPES``), the 3B / 7B sizes
from the models' published ``config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from segzero_edge.layout import REASONER_SIZE
from segzero_edge.layout import sam2_size as sam2_size_key
from segzero_export.memory import SAM2_PARAMS_M
from segzero_export.quantize import QUANT_TYPES
from segzero_export.targets import TARGETS, Target

GB = 1e9
KV_BYTES = 2  # f16 K and V cache entries
VISION_BYTES = 2  # the mmproj (vision tower) is stored in f16
SAM2_BYTES = 2  # TensorRT FP16 engines

SAM2_GFLOPS: dict[str, tuple[float, float]] = {
    # variant: (encoder GFLOPs at 1024 x 1024, decoder GFLOPs for 3 prompt points (box + point)).
    # Counted with torch.utils.flop_counter (2 per multiply-add, attention included) on the
    # encoder / decoder modules this project exports, sam2 1.1.0's SAM2.1 configs. Their
    # parameter counts: segzero_export.memory.SAM2_PARAMS_M.
    "tiny": (292.4, 3.71),
    "small": (360.1, 3.71),
    "base_plus": (646.8, 3.71),
    "large": (1822.8, 3.71),
}


@dataclass(frozen=True)
class ReasonerShape:
    """The sizes of a Qwen2.5-VL model that set its FLOPs and bytes."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision_depth: int
    vision_hidden: int
    vision_intermediate: int
    vision_full_blocks: int
    vision_window: int = 112
    patch_size: int = 14
    merge_size: int = 2

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str = "model") -> ReasonerShape:
        """From a Hugging Face ``Qwen2_5_VLConfig`` dict (``config.json``)."""
        tc = config.get("text_config") or config
        vc = config["vision_config"]
        heads = int(tc["num_attention_heads"])
        return cls(
            name=name,
            layers=int(tc["num_hidden_layers"]),
            hidden=int(tc["hidden_size"]),
            intermediate=int(tc["intermediate_size"]),
            heads=heads,
            kv_heads=int(tc.get("num_key_value_heads") or heads),
            head_dim=int(tc.get("head_dim") or int(tc["hidden_size"]) // heads),
            vocab=int(tc["vocab_size"]),
            vision_depth=int(vc["depth"]),
            vision_hidden=int(vc["hidden_size"]),
            vision_intermediate=int(vc["intermediate_size"]),
            vision_full_blocks=len(vc.get("fullatt_block_indexes") or ()),
            vision_window=int(vc.get("window_size", 112)),
            patch_size=int(vc.get("patch_size", 14)),
            merge_size=int(vc.get("spatial_merge_size", 2)),
        )

    # -- parameter counts (matmul weights only; norms and biases are negligible) ---------
    @property
    def layer_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        return q + kv + o + 3 * self.hidden * self.intermediate

    @property
    def output_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def vision_block_params(self) -> int:
        v = self.vision_hidden
        return 4 * v * v + 3 * v * self.vision_intermediate

    @property
    def vision_params(self) -> int:
        v, m = self.vision_hidden, self.merge_size**2
        patch = 3 * 2 * self.patch_size**2 * v
        merger = (m * v) ** 2 + m * v * self.hidden
        return patch + self.vision_depth * self.vision_block_params + merger

    # -- FLOPs (2 per multiply-add) ------------------------------------------------------
    def vision_flops(self, image_size: int = REASONER_SIZE) -> float:
        """Vision encoder on one ``image_size`` square image (window + full attention)."""
        side = image_size // self.patch_size
        n = side * side
        v, m = self.vision_hidden, self.merge_size**2
        window = (self.vision_window // self.patch_size) ** 2
        windowed = self.vision_depth - self.vision_full_blocks
        linear = (
            2 * n * (3 * 2 * self.patch_size**2 * v + self.vision_depth * self.vision_block_params)
        )
        attn = 4 * n * v * (self.vision_full_blocks * n + windowed * min(window, n))
        merger = 2 * (n // m) * ((m * v) ** 2 + m * v * self.hidden)
        return float(linear + attn + merger)

    def prefill_flops(self, n_tokens: int) -> float:
        """Text model over an ``n_tokens`` prompt (causal attention; logits of the last token)."""
        linear = 2 * n_tokens * self.layers * self.layer_params
        attn = 2 * self.layers * self.heads * self.head_dim * n_tokens * n_tokens
        return float(linear + attn + 2 * self.output_params)

    # -- bytes -----------------------------------------------------------------------------
    def weight_bytes_per_token(self, quant: str = "Q4_K_M") -> float:
        """Weights one decode step reads: every layer's matmuls + the output matrix."""
        if quant not in QUANT_TYPES:
            raise ValueError(f"unknown quantization {quant!r}; choose one of {list(QUANT_TYPES)}")
        q = QUANT_TYPES[quant]
        layers = self.layers * self.layer_params * q.bits_per_weight / 8
        return layers + self.output_params * q.output_bits / 8

    def kv_bytes(self, n_ctx: int) -> float:
        """The f16 KV cache of ``n_ctx`` tokens (read once per decode step)."""
        return float(n_ctx * self.layers * 2 * self.kv_heads * self.head_dim * KV_BYTES)


_QWEN25VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "window_size": 112,
    "patch_size": 14,
    "spatial_merge_size": 2,
}
QWEN25VL_3B_CONFIG: dict[str, Any] = {
    # Qwen/Qwen2.5-VL-3B-Instruct config.json (sizes only), transformers-5 layout
    "text_config": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 128000,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "tie_word_embeddings": True,
    },
    "vision_config": {**_QWEN25VL_VISION, "out_hidden_size": 2048},
}
QWEN25VL_7B_CONFIG: dict[str, Any] = {
    # Qwen/Qwen2.5-VL-7B-Instruct config.json (sizes only), transformers-5 layout
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 128000,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "tie_word_embeddings": False,
    },
    "vision_config": {**_QWEN25VL_VISION, "out_hidden_size": 3584},
}
QWEN25VL_3B = ReasonerShape.from_hf_config(QWEN25VL_3B_CONFIG, "Qwen2.5-VL-3B")
QWEN25VL_7B = ReasonerShape.from_hf_config(QWEN25VL_7B_CONFIG, "Qwen2.5-VL-7B")


@dataclass(frozen=True)
class Workload:
    """One pipeline call: model shapes and sizes of the inputs."""

    reasoner: ReasonerShape
    sam2_variant: str = "tiny"
    quant: str = "Q4_K_M"
    prompt_tokens: int = 1030
    decode_tokens: int = 64
    image_size: int = REASONER_SIZE
    objects: int = 1
    decode_weight_bytes: float | None = None
    """Measured bytes one decode step reads (e.g. from the GGUF file); else estimated."""


def _floor(flops: float, nbytes: float, target: Target) -> float | None:
    times = []
    if target.fp16_tflops > 0:
        times.append(flops / (target.fp16_tflops * 1e12))
    if target.bandwidth_gbs > 0:
        times.append(nbytes / (target.bandwidth_gbs * GB))
    return max(times) if times else None


def decode_tokens_per_s(work: Workload, bandwidth_gbs: float) -> float:
    """Bandwidth ceiling of decode in tokens/s (KV cache at the mean decode context)."""
    if bandwidth_gbs <= 0:
        raise ValueError(f"bandwidth must be > 0 GB/s, got {bandwidth_gbs}")
    weights = work.decode_weight_bytes or work.reasoner.weight_bytes_per_token(work.quant)
    ctx = work.prompt_tokens + work.decode_tokens / 2
    return bandwidth_gbs * GB / (weights + work.reasoner.kv_bytes(int(ctx)))


def stage_floors(work: Workload, target: Target) -> dict[str, float | None]:
    """Lower bounds in seconds per stage (None where the target has no figure for it)."""
    r = work.reasoner
    size = sam2_size_key(work.sam2_variant)
    sam_flops, sam_params = SAM2_GFLOPS[size], SAM2_PARAMS_M[size]
    weights = work.decode_weight_bytes or r.weight_bytes_per_token(work.quant)
    floors: dict[str, float | None] = {
        "vision_encode": _floor(
            r.vision_flops(work.image_size), r.vision_params * VISION_BYTES, target
        ),
        "prefill": _floor(r.prefill_flops(work.prompt_tokens), weights, target),
        "decode": (
            work.decode_tokens / decode_tokens_per_s(work, target.bandwidth_gbs)
            if target.bandwidth_gbs > 0
            else None
        ),
        "sam_encode": _floor(sam_flops[0] * 1e9, sam_params[0] * 1e6 * SAM2_BYTES, target),
        "sam_decode": _floor(
            work.objects * sam_flops[1] * 1e9,
            work.objects * sam_params[1] * 1e6 * SAM2_BYTES,
            target,
        ),
    }
    # The reasoner and the SAM2 encoder share the GPU: end to end is their sum.
    parts = [v for v in floors.values() if v is not None]
    floors["total"] = sum(parts) if len(parts) == len(floors) else None
    return floors


def roofline(work: Workload, targets: Mapping[str, Target] = TARGETS) -> dict[str, Any]:
    """Floors per stage and the decode ceiling for every target, JSON-ready."""
    out: dict[str, Any] = {"workload": {**asdict(work), "reasoner": work.reasoner.name}}
    for name, t in targets.items():
        out[name] = {
            "floors_s": stage_floors(work, t),
            "decode_tokens_per_s": decode_tokens_per_s(work, t.bandwidth_gbs),
            "bandwidth_gbs": t.bandwidth_gbs,
            "fp16_tflops": t.fp16_tflops,
        }
    return out


def fraction_of_ceiling(
    measured_s: Mapping[str, float], floors_s: Mapping[str, float | None]
) -> dict[str, float]:
    """``floor / measured`` per stage present in both (1.0 = at the roofline)."""
    return {
        k: floors_s[k] / v  # type: ignore[operator]
        for k, v in measured_s.items()
        if floors_s.get(k) is not None and v > 0
    }


def target_for_jetson(model: str | None, memory_gb: float = 0.0) -> str | None:
    """The target name of a Jetson from its device-tree model string (None if not an Orin)."""
    m = (model or "").lower()
    if "orin" not in m:
        return None
    if "nano" in m:
        return "orin-nano-8gb"
    if " nx" in m or "orin nx" in m:
        return "orin-nx-16gb"
    if "agx" in m:
        return "agx-orin-64gb" if memory_gb > 40 else "agx-orin-32gb"
    return None
