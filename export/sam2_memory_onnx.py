"""SAM2's video memory -> two ONNX graphs: memory attention and memory encoder.

Mirrors Meta's ``sam2/modeling/sam2_base.py`` (SAM2 1.1.0):

* ``SAM2MemoryAttention`` is ``SAM2Base._prepare_memory_conditioned_features`` for a frame
  that is not an initial conditioning frame, from the point where the memories are chosen:
  it adds the spatial (``maskmem_pos_enc``) and temporal (``maskmem_tpos_enc``) encodings of
  each memory frame, splits each object pointer into ``C // mem_dim`` tokens with its
  temporal sine encoding (``get_1d_sine_pe`` + ``obj_ptr_tpos_proj``), and runs
  ``MemoryAttention`` (self-attention and cross-attention with rotary encodings, pointer
  tokens excluded from RoPE). Which frames and pointers are chosen is the caller's job
  (``segzero_edge.tracker``), as it is ``_prepare_memory_conditioned_features``'s.
* ``SAM2MemoryEncoder`` is ``SAM2Base._encode_new_memory``: the chosen low-resolution mask
  logits upsampled to 1024 x 1024 (as ``track_step`` / ``propagate_in_video_preflight`` do),
  binarised for masks from prompts (``binarize_mask_from_pts_for_mem_enc``, which
  ``build_sam2_video_predictor`` turns on) or squashed by a sigmoid, scaled and biased,
  fused with the frame's features, plus ``no_obj_embed_spatial`` when the object score is
  <= 0.

Both graphs take the encoder graph's ``image_embed`` (which has ``no_mem_embed`` added) and
subtract ``no_mem_embed`` again to recover the raw backbone features SAM2 uses here. The
rotary encodings are written with real arithmetic (no complex tensors) and the one-hot
lookups as comparisons, so TensorRT parses both graphs; the only dynamic dimensions are the
number of memory frames and of object pointers (``segzero_edge.layout.SAM2_MEMORY_DYNAMIC``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segzero_edge.layout import SAM2_FEAT_SIZE, TRACKING_METADATA_KEY

VIDEO_PREDICTOR_OVERRIDES = {"binarize_mask_from_pts_for_mem_enc": True, "fill_hole_area": 8}
"""What ``sam2.build_sam.build_sam2_video_predictor`` sets on top of the model config."""


def tracking_config(model: Any) -> dict[str, Any]:
    """SAM2's memory settings the runtime tracker follows (``SAM2Base`` attributes).

    ``fill_hole_area`` is recorded as the video predictor sets it; Meta applies it only with
    its CUDA connected-components kernel (on CPU it warns and skips), and so does not this
    runtime (see ``segzero_edge.tracker``).
    """
    return {
        "num_maskmem": int(model.num_maskmem),
        "max_obj_ptrs_in_encoder": int(model.max_obj_ptrs_in_encoder),
        "memory_temporal_stride_for_eval": int(model.memory_temporal_stride_for_eval),
        "use_obj_ptrs_in_encoder": bool(model.use_obj_ptrs_in_encoder),
        "use_signed_tpos_enc_to_obj_ptrs": bool(model.use_signed_tpos_enc_to_obj_ptrs),
        "multimask_output_in_sam": bool(model.multimask_output_in_sam),
        "multimask_output_for_tracking": bool(model.multimask_output_for_tracking),
        "multimask_min_pt_num": int(model.multimask_min_pt_num),
        "multimask_max_pt_num": int(model.multimask_max_pt_num),
        "use_multimask_token_for_obj_ptr": bool(model.use_multimask_token_for_obj_ptr),
        "pred_obj_scores": bool(model.pred_obj_scores),
        "mem_dim": int(model.mem_dim),
        "hidden_dim": int(model.hidden_dim),
        **VIDEO_PREDICTOR_OVERRIDES,
    }


def read_tracking_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """:func:`tracking_config` as stored in a memory attention graph, or None if absent."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == TRACKING_METADATA_KEY:
            value = json.loads(prop.value)
            return value if isinstance(value, dict) else None
    return None


def check_supported(model: Any) -> None:
    """Raise ``ValueError`` for SAM2 settings these graphs do not reproduce."""
    problems = []
    if not model.directly_add_no_mem_embed:
        problems.append("directly_add_no_mem_embed=False")
    if model.num_maskmem < 1:
        problems.append(f"num_maskmem={model.num_maskmem}")
    if not model.use_high_res_features_in_sam:
        problems.append("use_high_res_features_in_sam=False")
    if not model.memory_attention.batch_first:
        problems.append("memory attention with batch_first=False")
    if model.hidden_dim % model.mem_dim:
        problems.append(f"hidden_dim {model.hidden_dim} not a multiple of mem_dim {model.mem_dim}")
    if problems:
        raise ValueError("unsupported SAM2 configuration for tracking: " + ", ".join(problems))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``apply_rotary_enc`` in real arithmetic: channel pairs (2i, 2i+1) times ``cos + i sin``."""
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def rope_tables(attn: Any, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``/``sin`` ``[n_tokens, head_dim / 2]`` of a RoPEAttention's ``compute_axial_cis``."""
    side = math.isqrt(n_tokens)
    cis = attn.compute_cis(end_x=side, end_y=side)  # complex [n_tokens, head_dim / 2]
    return cis.real.float().contiguous(), cis.imag.float().contiguous()


class _RoPEAttention(nn.Module):
    """``sam2.modeling.sam.transformer.RoPEAttention`` with real-valued rotary tables.

    Keys may come in two parts: ``k_rope`` (spatial memory, rotated with the query's table
    repeated once per memory frame, ``rope_k_repeat``) and ``k_plain`` (object pointer
    tokens, ``num_k_exclude_rope``), projected separately and concatenated.
    """

    def __init__(self, attn: Any, n_tokens: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj = attn.q_proj, attn.k_proj
        self.v_proj, self.out_proj = attn.v_proj, attn.out_proj
        self.num_heads = int(attn.num_heads)
        self.n_tokens = n_tokens
        self.head_dim = int(attn.internal_dim) // self.num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k_rope: torch.Tensor,
        v: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        k_plain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cos, sin = rope
        q = _rotate(self._heads(self.q_proj(q)), cos, sin)
        k = self._heads(self.k_proj(k_rope))
        # one rotary table per memory frame (rope_k_repeat): [1, h, frames, n, d]
        frames = k.reshape(1, self.num_heads, -1, self.n_tokens, self.head_dim)
        k = _rotate(frames, cos, sin).reshape(1, self.num_heads, -1, self.head_dim)
        if k_plain is not None:
            k = torch.cat([k, self._heads(self.k_proj(k_plain))], dim=2)
        v = self._heads(self.v_proj(v))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(1, -1, self.num_heads * self.head_dim)
        return self.out_proj(out)


class _MemoryAttentionLayer(nn.Module):
    """``sam2.modeling.memory_attention.MemoryAttentionLayer`` (eval: dropout off)."""

    def __init__(self, layer: Any, n_tokens: int) -> None:
        super().__init__()
        self.self_attn = _RoPEAttention(layer.self_attn, n_tokens)
        self.cross_attn = _RoPEAttention(layer.cross_attn_image, n_tokens)
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.norm1, self.norm2, self.norm3 = layer.norm1, layer.norm2, layer.norm3
        self.activation = layer.activation
        self.pos_enc_at_attn = bool(layer.pos_enc_at_attn)
        self.pos_at_queries = bool(layer.pos_enc_at_cross_attn_queries)
        self.pos_at_keys = bool(layer.pos_enc_at_cross_attn_keys)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        mem: torch.Tensor,
        mem_pos: torch.Tensor,
        ptr: torch.Tensor,
        ptr_pos: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        t2 = self.norm1(tgt)
        qk = t2 + query_pos if self.pos_enc_at_attn else t2
        tgt = tgt + self.self_attn(qk, qk, t2, rope)
        t2 = self.norm2(tgt)
        q = t2 + query_pos if self.pos_at_queries else t2
        k_mem = mem + mem_pos if self.pos_at_keys else mem
        k_ptr = ptr + ptr_pos if self.pos_at_keys else ptr
        tgt = tgt + self.cross_attn(q, k_mem, torch.cat([mem, ptr], dim=1), rope, k_ptr)
        t2 = self.norm3(tgt)
        return tgt + self.linear2(self.activation(self.linear1(t2)))


class SAM2MemoryAttention(nn.Module):
    """The current frame's features conditioned on memory frames and object pointers.

    Inputs (``N`` memory frames, ``M`` object pointers, both >= 1):

    * ``image_embed [1, 256, 64, 64]`` float32: the encoder graph's output for this frame.
    * ``memory [N, 64, 64, 64]`` float32: ``maskmem_features`` of each memory frame.
    * ``memory_tpos [N]`` float32: SAM2's ``t_pos`` of each frame: 0 for conditioning
      frames, ``num_maskmem - k`` for the frame ``k`` frames back.
    * ``obj_ptrs [M, 256]`` float32: object pointers (``SAM2Base._forward_sam_heads``).
    * ``obj_ptr_tpos [M]`` float32: each pointer's signed frame distance divided by
      ``max_obj_ptrs_in_encoder - 1`` (``t_diff_max``).

    Output ``pix_feat_with_mem [1, 256, 64, 64]``, the decoder's ``image_embed`` for the frame.
    """

    no_mem_embed: torch.Tensor
    image_pos: torch.Tensor
    maskmem_pos: torch.Tensor
    maskmem_tpos_enc: torch.Tensor
    tpos_index: torch.Tensor
    dim_t: torch.Tensor
    ptr_split: torch.Tensor
    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, model: Any) -> None:
        super().__init__()
        check_supported(model)
        side = SAM2_FEAT_SIZE
        n_tokens = side * side
        ma = model.memory_attention
        self.layers = nn.ModuleList(_MemoryAttentionLayer(layer, n_tokens) for layer in ma.layers)
        # one rotary table shared by every attention (all have the same head size and theta)
        tables = [
            rope_tables(a, n_tokens)
            for layer in ma.layers
            for a in (layer.self_attn, layer.cross_attn_image)
        ]
        if any(
            c.shape != tables[0][0].shape or not torch.equal(c, tables[0][0]) for c, _ in tables
        ):
            raise ValueError("unsupported SAM2 memory attention: rotary tables differ by layer")
        self.register_buffer("rope_cos", tables[0][0])
        self.register_buffer("rope_sin", tables[0][1])
        self.norm = ma.norm
        self.pos_enc_at_input = bool(ma.pos_enc_at_input)
        self.hidden_dim, self.mem_dim = int(model.hidden_dim), int(model.mem_dim)
        self.num_maskmem = int(model.num_maskmem)
        self.register_buffer("no_mem_embed", model.no_mem_embed.detach().reshape(1, -1, 1, 1))
        with torch.no_grad():
            probe = torch.zeros(1, self.hidden_dim, side, side)
            image_pos = model.image_encoder.neck.position_encoding(probe)  # vision_pos_enc[-1]
            mem_probe = torch.zeros(1, self.mem_dim, side, side)
            maskmem_pos = model.memory_encoder.position_encoding(mem_probe)
        self.register_buffer("image_pos", image_pos.flatten(2).transpose(1, 2).contiguous())
        self.register_buffer("maskmem_pos", maskmem_pos.flatten(2).transpose(1, 2)[0].contiguous())
        tpos = model.maskmem_tpos_enc.detach().reshape(self.num_maskmem, self.mem_dim)
        self.register_buffer("maskmem_tpos_enc", tpos)
        self.register_buffer("tpos_index", torch.arange(self.num_maskmem, dtype=torch.float32))
        self.add_tpos = bool(model.add_tpos_enc_to_obj_ptrs)
        self.obj_ptr_tpos_proj = model.obj_ptr_tpos_proj
        tpos_dim = self.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else self.mem_dim
        pe_dim = tpos_dim // 2
        dim_t = torch.arange(pe_dim, dtype=torch.float32)  # get_1d_sine_pe's frequencies
        self.register_buffer("dim_t", 10000 ** (2 * (dim_t // 2) / pe_dim))
        self.split = self.hidden_dim // self.mem_dim
        self.register_buffer("ptr_split", torch.zeros(1, self.split, 1))

    def forward(
        self,
        image_embed: torch.Tensor,
        memory: torch.Tensor,
        memory_tpos: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptr_tpos: torch.Tensor,
    ) -> torch.Tensor:
        c, d = self.hidden_dim, self.mem_dim
        side = SAM2_FEAT_SIZE
        curr = (image_embed - self.no_mem_embed).flatten(2).transpose(1, 2)  # [1, HW, C]
        out = curr + 0.1 * self.image_pos if self.pos_enc_at_input else curr
        # spatial memories, frame-major, each with its spatial + temporal encoding
        mem = memory.flatten(2).transpose(1, 2).reshape(1, -1, d)  # [1, N * HW, mem_dim]
        slot = (self.num_maskmem - 1) - memory_tpos  # maskmem_tpos_enc row of each frame
        onehot = (slot.unsqueeze(-1) == self.tpos_index).to(memory.dtype)  # [N, num_maskmem]
        tpos = onehot @ self.maskmem_tpos_enc  # [N, mem_dim]
        mem_pos = (self.maskmem_pos.unsqueeze(0) + tpos.unsqueeze(1)).reshape(1, -1, d)
        # object pointers, each split into C // mem_dim tokens sharing its temporal encoding
        ptr = obj_ptrs.reshape(1, -1, d)  # [1, M * split, mem_dim]
        if self.add_tpos:
            pe = obj_ptr_tpos.unsqueeze(-1) / self.dim_t
            pe = self.obj_ptr_tpos_proj(torch.cat([pe.sin(), pe.cos()], dim=-1))  # [M, mem_dim]
        else:
            pe = torch.zeros_like(obj_ptrs[:, :d]) * obj_ptr_tpos.unsqueeze(-1)
        ptr_pos = (pe.unsqueeze(1) + self.ptr_split).reshape(1, -1, d)  # repeat_interleave
        rope = (self.rope_cos, self.rope_sin)
        for layer in self.layers:
            out = layer(out, self.image_pos, mem, mem_pos, ptr, ptr_pos, rope)
        out = self.norm(out)
        return out.transpose(1, 2).reshape(1, c, side, side)


class SAM2MemoryEncoder(nn.Module):
    """A frame's memory from its features and chosen mask (``SAM2Base._encode_new_memory``).

    Inputs: ``image_embed [1, 256, 64, 64]`` (encoder graph output), ``mask_logits
    [1, 1, 256, 256]`` (the chosen low-resolution logits, ``NO_OBJ_SCORE`` where the object
    score is <= 0), ``object_score_logits [1, 1]``, ``is_mask_from_pts [1]`` (1.0: binarise
    the mask, for conditioning frames seeded from prompts; 0.0: sigmoid).
    Output ``maskmem_features [1, 64, 64, 64]`` float32.
    """

    no_mem_embed: torch.Tensor
    no_obj_embed_spatial: torch.Tensor | None

    def __init__(self, model: Any) -> None:
        super().__init__()
        check_supported(model)
        self.memory_encoder = model.memory_encoder
        self.image_size = int(model.image_size)
        self.register_buffer("no_mem_embed", model.no_mem_embed.detach().reshape(1, -1, 1, 1))
        self.scale = float(model.sigmoid_scale_for_mem_enc)
        self.bias = float(model.sigmoid_bias_for_mem_enc)
        self.binarize = VIDEO_PREDICTOR_OVERRIDES["binarize_mask_from_pts_for_mem_enc"]
        spatial = model.no_obj_embed_spatial
        self.register_buffer(
            "no_obj_embed_spatial",
            None if spatial is None else spatial.detach().reshape(1, -1, 1, 1),
        )

    def forward(
        self,
        image_embed: torch.Tensor,
        mask_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        is_mask_from_pts: torch.Tensor,
    ) -> torch.Tensor:
        pix_feat = image_embed - self.no_mem_embed
        size = (self.image_size, self.image_size)
        high = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        mask = torch.sigmoid(high)
        if self.binarize:
            flag = is_mask_from_pts.reshape(1, 1, 1, 1)
            mask = flag * (high > 0).to(high.dtype) + (1 - flag) * mask
        if self.scale != 1.0:
            mask = mask * self.scale
        if self.bias != 0.0:
            mask = mask + self.bias
        feats = self.memory_encoder(pix_feat, mask, skip_mask_sigmoid=True)["vision_features"]
        if self.no_obj_embed_spatial is not None:
            present = (object_score_logits > 0).to(feats.dtype).reshape(1, 1, 1, 1)
            feats = feats + (1 - present) * self.no_obj_embed_spatial
        return feats


def example_memory_attention_inputs(
    model: Any, n_memory: int = 3, n_ptrs: int = 4
) -> tuple[torch.Tensor, ...]:
    """Seeded example inputs of :class:`SAM2MemoryAttention` (for export and tests)."""
    g = torch.Generator().manual_seed(0)
    side = SAM2_FEAT_SIZE
    tpos = torch.tensor([0.0] + [float(model.num_maskmem - 1 - i) for i in range(n_memory - 1)])
    return (
        torch.randn(1, model.hidden_dim, side, side, generator=g),
        torch.randn(n_memory, model.mem_dim, side, side, generator=g),
        tpos,
        torch.randn(n_ptrs, model.hidden_dim, generator=g),
        torch.arange(n_ptrs, dtype=torch.float32) / (model.max_obj_ptrs_in_encoder - 1),
    )


def example_memory_encoder_inputs(model: Any) -> tuple[torch.Tensor, ...]:
    """Seeded example inputs of :class:`SAM2MemoryEncoder`."""
    g = torch.Generator().manual_seed(1)
    side = SAM2_FEAT_SIZE
    low = model.image_size // 4
    return (
        torch.randn(1, model.hidden_dim, side, side, generator=g),
        torch.randn(1, 1, low, low, generator=g) * 8,
        torch.ones(1, 1),
        torch.ones(1),
    )


__all__ = [
    "TRACKING_METADATA_KEY",
    "SAM2MemoryAttention",
    "SAM2MemoryEncoder",
    "check_supported",
    "example_memory_attention_inputs",
    "example_memory_encoder_inputs",
    "read_tracking_metadata",
    "rope_tables",
    "tracking_config",
]
