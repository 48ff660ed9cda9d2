"""Roofline ceilings for the pipeline's stages on the Jetson Orin targets (NVIDIA data sheets).

A stage cannot finish sooner than its arithmetic at the device's peak FP16 rate, nor sooner
than the bytes it must read at the device's memory bandwidth:
``floor = max(flops / peak_flops, bytes / bandwidth)``. Decode is bandwidth-bound: each
generated token reads every weight it multiplies (the whole text model except the embedding
table, of which one row is read) plus the KV cache so far. Prefill, the vision encoder and
SAM2 are compute-bound. A measured time divided into its floor is the fraction of the
ceiling reached (1.0 = at the roofline). No torch: bits per weight come from the exporter's
one list of quantization types (``segzero_export.quantize.QUANT_TYPES``), the Qwen2.5-VL-3B/7B
and Qwen3-VL-2B/4B/8B sizes from the models' published ``config.json``
(``segzero_export.model_shapes``).

The two vision towers differ where it counts: Qwen2.5-VL's (14 px patches, SwiGLU MLPs, window
attention but in 4 blocks, 900 tokens at 840 px) and Qwen3-VL's (16 px patches, GELU MLPs of
two matrices, full attention in every block, a learned position grid, a merger per deepstack
level besides the final one, 676 tokens at its 832 px resize). Each shape carries the side of
the square its reasoner sees (``ReasonerShape.resize_size``, Seg-Zero's ``resize_size``), which a
:class:`Workload` uses unless given ``image_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from segzero_edge.layout import QWEN3VL_RESIZE_SIZE, REASONER_SIZE
from segzero_edge.layout import sam2_size as sam2_size_key
from segzero_export.memory import SAM2_PARAMS_M
from segzero_export.model_shapes import DISPLAY_NAMES, SHAPE_NAMES, is_qwen3vl, published_config
from segzero_export.quantize import QUANT_TYPES
from segzero_export.targets import TARGETS, Target

from .workload import DEFAULT_DECODE_TOKENS

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


PROMPT_TEXT_TOKENS = 130
"""Text tokens of a Seg-Zero prompt around the image (chat template + question), about."""


@dataclass(frozen=True)
class ReasonerShape:
    """The sizes of a Qwen2.5-VL or Qwen3-VL model that set its FLOPs and bytes.

    ``vision_mlp_mats``: matrices per vision MLP (3: Qwen2.5-VL's SwiGLU, 2: Qwen3-VL's GELU
    MLP); ``deepstack_mergers``: Qwen3-VL's extra mergers (one per deepstack level);
    ``vision_positions``: rows of a learned vision position table; ``frame``: the side of the
    square image the model's family shows it (840, Qwen3-VL 832).
    """

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
    vision_mlp_mats: int = 3
    deepstack_mergers: int = 0
    vision_positions: int = 0
    resize_size: int = REASONER_SIZE

    @property
    def image_tokens(self) -> int:
        """Image tokens of one ``resize_size`` square image:
        ``(resize_size / (patch * merge)) ** 2``."""
        return (self.resize_size // (self.patch_size * self.merge_size)) ** 2

    @property
    def prompt_tokens(self) -> int:
        """Tokens of a Seg-Zero prompt on one image: image tokens + :data:`PROMPT_TEXT_TOKENS`."""
        return self.image_tokens + PROMPT_TEXT_TOKENS

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str = "model") -> ReasonerShape:
        """From a Hugging Face ``Qwen2_5_VLConfig`` or ``Qwen3VLConfig`` dict (``config.json``;
        Qwen3-VL by ``model_type``)."""
        tc = config.get("text_config") or config
        vc = config["vision_config"]
        heads = int(tc["num_attention_heads"])
        if is_qwen3vl(dict(config)):
            depth = int(vc["depth"])
            qwen3: dict[str, Any] = {
                "vision_full_blocks": depth,  # no window attention
                "vision_mlp_mats": 2,
                "deepstack_mergers": len(vc.get("deepstack_visual_indexes") or ()),
                "vision_positions": int(vc.get("num_position_embeddings", 0)),
                "resize_size": QWEN3VL_RESIZE_SIZE,
            }
        else:
            qwen3 = {"vision_full_blocks": len(vc.get("fullatt_block_indexes") or ())}
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
            vision_window=int(vc.get("window_size", 112)),
            patch_size=int(vc.get("patch_size", 14)),
            merge_size=int(vc.get("spatial_merge_size", 2)),
            **qwen3,
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
        return 4 * v * v + self.vision_mlp_mats * v * self.vision_intermediate

    @property
    def merger_params(self) -> int:
        """One merger (the final one, or one deepstack level's): 2 x 2 patches -> text width."""
        mv = self.merge_size**2 * self.vision_hidden
        return mv * mv + mv * self.hidden

    @property
    def vision_params(self) -> int:
        v = self.vision_hidden
        patch = 3 * 2 * self.patch_size**2 * v
        mergers = (1 + self.deepstack_mergers) * self.merger_params
        blocks = self.vision_depth * self.vision_block_params
        return patch + blocks + mergers + self.vision_positions * v

    # -- FLOPs (2 per multiply-add) ------------------------------------------------------
    def vision_flops(self, image_size: int | None = None) -> float:
        """Vision encoder on one ``image_size`` square image (default :attr:`resize_size`; window +
        full attention, the final and deepstack mergers)."""
        side = (image_size or self.resize_size) // self.patch_size
        n = side * side
        v, m = self.vision_hidden, self.merge_size**2
        window = (self.vision_window // self.patch_size) ** 2
        windowed = self.vision_depth - self.vision_full_blocks
        linear = (
            2 * n * (3 * 2 * self.patch_size**2 * v + self.vision_depth * self.vision_block_params)
        )
        attn = 4 * n * v * (self.vision_full_blocks * n + windowed * min(window, n))
        mergers = 2 * (n // m) * (1 + self.deepstack_mergers) * self.merger_params
        return float(linear + attn + mergers)

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


QWEN25VL_3B_CONFIG: dict[str, Any] = published_config("qwen25vl-3b")
QWEN25VL_7B_CONFIG: dict[str, Any] = published_config("qwen25vl-7b")
REASONER_SHAPES: dict[str, ReasonerShape] = {
    name: ReasonerShape.from_hf_config(published_config(name), DISPLAY_NAMES[name])
    for name in SHAPE_NAMES
}
"""Every published size by its ``--reasoner-shapes`` name (``qwen25vl-3b`` ... ``qwen3vl-8b``)."""
QWEN25VL_3B = REASONER_SHAPES["qwen25vl-3b"]
QWEN25VL_7B = REASONER_SHAPES["qwen25vl-7b"]
QWEN3VL_2B = REASONER_SHAPES["qwen3vl-2b"]
QWEN3VL_4B = REASONER_SHAPES["qwen3vl-4b"]
QWEN3VL_8B = REASONER_SHAPES["qwen3vl-8b"]


@dataclass(frozen=True)
class Workload:
    """One pipeline call: model shapes and sizes of the inputs. ``prompt_tokens`` defaults to
    the shape's :attr:`ReasonerShape.prompt_tokens` (1030 at Qwen2.5-VL's 840 resize, 806 at
    Qwen3-VL's 832), ``image_size`` to its :attr:`ReasonerShape.resize_size`."""

    reasoner: ReasonerShape
    sam2_variant: str = "tiny"
    quant: str = "Q4_K_M"
    prompt_tokens: int = 0
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    image_size: int = 0
    objects: int = 1
    decode_weight_bytes: float | None = None
    """Measured bytes one decode step reads (e.g. from the GGUF file); else estimated."""

    def __post_init__(self) -> None:
        if not self.prompt_tokens:
            object.__setattr__(self, "prompt_tokens", self.reasoner.prompt_tokens)
        if not self.image_size:
            object.__setattr__(self, "image_size", self.reasoner.resize_size)


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
