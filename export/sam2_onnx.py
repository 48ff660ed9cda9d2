"""SAM2 -> ONNX graphs: the image encoder, the prompt encoder + mask decoder, and (from
:mod:`segzero_export.sam2_memory_onnx`) the video memory attention and memory encoder.

Follows Meta's ``sam2/sam2_image_predictor.py``: the encoder graph is
``SAM2ImagePredictor.set_image`` after pre-processing (Hiera + FPN, the decoder's
``conv_s0``/``conv_s1`` projections and the ``no_mem_embed`` addition); the decoder graph is
``_predict`` up to the low-resolution logits. The decoder embeds the prompts with plain
arithmetic (no OneHot, no data-dependent Tile, so TensorRT parses it) and returns all four
low-resolution mask logits with their IoU scores, plus what video tracking needs
(``SAM2Base._forward_sam_heads``): the object score logit and each mask token's object
pointer with the no-object pointer mixed in; mask selection, upsampling and thresholding
happen outside (``segzero_edge``). Graph file and tensor names come from
:mod:`segzero_edge.layout`.

The decoder takes a batch of prompts on one image (``point_coords [B, P, 2]``), as SAM2's
``MaskDecoder.predict_masks`` with ``repeat_image=True``: the image features and the dense
prompt embedding are broadcast over the batch, so one call decodes every object of an answer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from segzero_edge.fileio import atomic_path
from segzero_edge.layout import (
    SAM2_DECODER_FILE,
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_DECODER_TRACK_OUTPUTS,
    SAM2_ENCODER_FILE,
    SAM2_ENCODER_INPUTS,
    SAM2_ENCODER_OUTPUTS,
    SAM2_LOW_RES,
    SAM2_MASK_TOKENS,
    SAM2_MEMORY_ATTENTION_FILE,
    SAM2_MEMORY_ATTENTION_INPUTS,
    SAM2_MEMORY_ATTENTION_OUTPUTS,
    SAM2_MEMORY_DYNAMIC,
    SAM2_MEMORY_ENCODER_FILE,
    SAM2_MEMORY_ENCODER_INPUTS,
    SAM2_MEMORY_ENCODER_OUTPUTS,
    SAM2_SIZE,
)

from .sam2_model import build_sam2_model, infer_config

log = logging.getLogger(__name__)

OPSET = 18


class SAM2Encoder(nn.Module):
    """``image [1, 3, 1024, 1024]`` float32 (SAM2Transforms-normalised RGB) -> the decoder's
    inputs ``high_res_feats_0 [1, 32, 256, 256]``, ``high_res_feats_1 [1, 64, 128, 128]`` and
    ``image_embed [1, 256, 64, 64]`` (float32)."""

    no_mem_embed: torch.Tensor

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1
        self.num_feature_levels = model.num_feature_levels
        no_mem = model.no_mem_embed.detach().reshape(1, -1, 1, 1)
        if not model.directly_add_no_mem_embed:
            no_mem = torch.zeros_like(no_mem)
        self.register_buffer("no_mem_embed", no_mem)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.image_encoder(image)["backbone_fpn"][-self.num_feature_levels :]
        return self.conv_s0(fpn[0]), self.conv_s1(fpn[1]), fpn[2] + self.no_mem_embed


class SAM2Decoder(nn.Module):
    """Prompt encoder + mask decoder with all four mask outputs for ``B`` prompts of ``P`` points.

    Inputs: the encoder's three feature maps (batch 1); ``point_coords [B, P, 2]`` float32
    (x, y) in the 1024 x 1024 input frame; ``point_labels [B, P]`` float32 (1 positive, 0
    negative, 2 / 3 box top-left / bottom-right, -1 padding); ``mask_input [1, 1, 256, 256]``
    float32 logits and ``has_mask_input [1]`` (0 or 1), one previous mask for every prompt of
    the batch. Outputs: ``masks [B, 4, 256, 256]`` float32 logits (index 0 the single-mask
    output, 1..3 multimask), ``iou_predictions [B, 4]``, ``object_score_logits [B, 1]`` and
    ``obj_ptr [B, 4, 256]`` (``obj_ptr_proj`` of each mask token, replaced by ``no_obj_ptr``
    when the score is <= 0, as ``SAM2Base._forward_sam_heads`` does).
    """

    dense_pe: torch.Tensor
    gaussian: torch.Tensor
    label_table: torch.Tensor
    label_values: torch.Tensor
    no_mask_embed: torch.Tensor
    output_tokens: torch.Tensor
    mask_downscaling: Any
    transformer: Any
    output_upscaling: Any
    hyper_mlps: Any
    iou_head: Any

    def __init__(self, model: Any) -> None:
        super().__init__()
        pe = model.sam_prompt_encoder
        dec = model.sam_mask_decoder
        self.input_size = float(pe.input_image_size[0]), float(pe.input_image_size[1])
        self.register_buffer("dense_pe", pe.get_dense_pe().detach())
        self.register_buffer("gaussian", pe.pe_layer.positional_encoding_gaussian_matrix.detach())
        # rows for labels -1 (padding), 0, 1, 2, 3 (see PromptEncoder._embed_points)
        table = [pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings]
        self.register_buffer("label_table", torch.cat(table, 0).detach())
        self.register_buffer("label_values", torch.arange(-1, 4, dtype=torch.float32))
        self.register_buffer("no_mask_embed", pe.no_mask_embed.weight.detach().reshape(1, -1, 1, 1))
        self.mask_downscaling = pe.mask_downscaling
        self.transformer = dec.transformer
        self.output_upscaling = dec.output_upscaling
        self.hyper_mlps = dec.output_hypernetworks_mlps
        self.iou_head = dec.iou_prediction_head
        tokens = [dec.iou_token.weight, dec.mask_tokens.weight]
        self.token_offset = 0
        if dec.pred_obj_scores:
            tokens.insert(0, dec.obj_score_token.weight)
            self.token_offset = 1
        self.register_buffer("output_tokens", torch.cat(tokens, 0).detach()[None])
        self.num_mask_tokens = dec.num_mask_tokens
        self.obj_score_head = dec.pred_obj_score_head if dec.pred_obj_scores else None
        self.obj_ptr_proj = model.obj_ptr_proj
        self.soft_no_obj_ptr = bool(model.soft_no_obj_ptr)
        self.fixed_no_obj_ptr = bool(model.fixed_no_obj_ptr)
        no_obj = getattr(model, "no_obj_ptr", None)
        self.register_buffer(
            "no_obj_ptr", None if no_obj is None else no_obj.detach().reshape(1, 1, -1)
        )
        if not dec.use_high_res_features:
            raise ValueError(
                "only SAM2 configs with high-resolution decoder features are supported"
            )

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """SAM2's point embedding (with its padding point), one-hot written as arithmetic."""
        coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1) + 0.5
        labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        scale = torch.tensor([self.input_size[1], self.input_size[0]], dtype=coords.dtype)
        xy = 2 * (coords / scale) - 1
        xy = 2 * math.pi * (xy @ self.gaussian)
        pos = torch.cat([torch.sin(xy), torch.cos(xy)], dim=-1)
        onehot = (labels.unsqueeze(-1) == self.label_values).to(pos.dtype)
        return pos * (1 - onehot[..., :1]) + onehot @ self.label_table

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self.embed_points(point_coords, point_labels)  # [B, P + 1, C]
        b = sparse.shape[0]
        has_mask = has_mask_input.reshape(1, 1, 1, 1)
        dense = has_mask * self.mask_downscaling(mask_input) + (1 - has_mask) * self.no_mask_embed
        # SAM2 repeats the image per prompt (repeat_interleave); Expand is the same, and
        # TensorRT parses it. dense_pe and the high-res features broadcast over the batch.
        tokens = torch.cat([self.output_tokens.expand(b, -1, -1), sparse], dim=1)
        src = (image_embed + dense).expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, self.dense_pe, tokens)
        s = self.token_offset
        iou_token = hs[:, s, :]
        mask_tokens = hs[:, s + 1 : s + 1 + self.num_mask_tokens, :]
        src = src.transpose(1, 2).reshape(-1, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        up = act1(ln1(dc1(src) + high_res_feats_1))
        up = act2(dc2(up) + high_res_feats_0)
        hyper = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(self.hyper_mlps)], dim=1
        )
        _, uc, uh, uw = up.shape
        masks = (hyper @ up.reshape(-1, uc, uh * uw)).reshape(-1, self.num_mask_tokens, uh, uw)
        score, obj_ptr = self.object_pointer(hs[:, 0, :], mask_tokens)
        return masks, self.iou_head(iou_token), score, obj_ptr

    def object_pointer(
        self, score_token: torch.Tensor, mask_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Object score logits ``[B, 1]``, pointers ``[B, 4, C]`` (SAM2Base._forward_sam_heads)."""
        if self.obj_score_head is None:  # MaskDecoder's constant
            score = torch.full_like(mask_tokens[:, 0, :1], 10.0)
        else:
            score = self.obj_score_head(score_token)
        ptr = self.obj_ptr_proj(mask_tokens)
        if self.no_obj_ptr is not None:
            present = score.sigmoid() if self.soft_no_obj_ptr else (score > 0).to(ptr.dtype)
            present = present.reshape(-1, 1, 1)
            if self.fixed_no_obj_ptr:
                ptr = present * ptr
            ptr = ptr + (1 - present) * self.no_obj_ptr
        return score, ptr


def _example_decoder_inputs(n_prompts: int = 2, n_points: int = 3) -> tuple[torch.Tensor, ...]:
    """Example decoder inputs; a batch above 1 keeps the tracer from specialising it away."""
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 256, 64, 64, generator=g),
        torch.randn(1, 32, 256, 256, generator=g),
        torch.randn(1, 64, 128, 128, generator=g),
        torch.rand(n_prompts, n_points, 2, generator=g) * SAM2_SIZE,
        torch.tensor([[2.0, 3.0, 1.0][:n_points]] * n_prompts),
        torch.zeros(1, 1, SAM2_LOW_RES, SAM2_LOW_RES),
        torch.zeros(1),
    )


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """Legacy (TorchScript) exporter: it gives compact graphs with named inputs/outputs."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


PROMPTS_AXIS = "num_prompts"
POINTS_AXIS = "num_points"
DECODER_DYNAMIC_AXES = {
    "point_coords": {0: PROMPTS_AXIS, 1: POINTS_AXIS},
    "point_labels": {0: PROMPTS_AXIS, 1: POINTS_AXIS},
    "masks": {0: PROMPTS_AXIS},
    "iou_predictions": {0: PROMPTS_AXIS},
    "object_score_logits": {0: PROMPTS_AXIS},
    "obj_ptr": {0: PROMPTS_AXIS},
}
_FEATURES = SAM2_SIZE // 16  # Hiera's stride-16 feature map: 64 x 64
OUTPUT_SHAPES: dict[str, dict[str, list[int | str]]] = {
    SAM2_ENCODER_FILE: {
        "high_res_feats_0": [1, 32, SAM2_LOW_RES, SAM2_LOW_RES],
        "high_res_feats_1": [1, 64, SAM2_LOW_RES // 2, SAM2_LOW_RES // 2],
        "image_embed": [1, 256, _FEATURES, _FEATURES],
    },
    SAM2_DECODER_FILE: {
        "masks": [PROMPTS_AXIS, SAM2_MASK_TOKENS, SAM2_LOW_RES, SAM2_LOW_RES],
        "iou_predictions": [PROMPTS_AXIS, SAM2_MASK_TOKENS],
        "object_score_logits": [PROMPTS_AXIS, 1],
        "obj_ptr": [PROMPTS_AXIS, SAM2_MASK_TOKENS, 256],
    },
    SAM2_MEMORY_ATTENTION_FILE: {"pix_feat_with_mem": [1, 256, _FEATURES, _FEATURES]},
    SAM2_MEMORY_ENCODER_FILE: {"maskmem_features": [1, 64, _FEATURES, _FEATURES]},
}


def _pin_and_check(path: Path) -> None:
    """Write the output shapes (static sizes, named batch axis) and run the full ONNX checker."""
    import onnx

    model = onnx.load(str(path))
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for dim, size in zip(dims, OUTPUT_SHAPES[path.name][out.name], strict=True):
            dim.Clear()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def simplify_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Simplify an exported graph with onnxslim (constant folding, shape-op removal) to ``dst``.

    The result passes ``onnx.checker.check_model(full_check=True)`` before it is written
    (atomically; ``dst`` may be ``src``).
    """
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load(str(src)))
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Path(dst)


def _set_metadata(path: Path, key: str, value: str) -> None:
    """Store ``key = value`` in the graph's ``metadata_props`` (read back by onnxruntime)."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            break
    else:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def _export_memory(model: Any, tmp: Path) -> None:
    """The two video-memory graphs (:mod:`segzero_export.sam2_memory_onnx`) into ``tmp``."""
    from . import sam2_memory_onnx as mem

    _export(
        mem.SAM2MemoryAttention(model).eval(),
        mem.example_memory_attention_inputs(model),
        tmp / SAM2_MEMORY_ATTENTION_FILE,
        SAM2_MEMORY_ATTENTION_INPUTS,
        SAM2_MEMORY_ATTENTION_OUTPUTS,
        {name: {0: dim} for name, dim in SAM2_MEMORY_DYNAMIC.items()},
    )
    _export(
        mem.SAM2MemoryEncoder(model).eval(),
        mem.example_memory_encoder_inputs(model),
        tmp / SAM2_MEMORY_ENCODER_FILE,
        SAM2_MEMORY_ENCODER_INPUTS,
        SAM2_MEMORY_ENCODER_OUTPUTS,
    )


def export_sam2(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    config: str | None = None,
    simplify: bool = True,
    memory: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Export a Meta SAM2 checkpoint to ``sam2_encoder.onnx`` and ``sam2_decoder.onnx``, and
    with ``memory`` (default) the video-tracking graphs ``sam2_memory_attention.onnx`` and
    ``sam2_memory_encoder.onnx`` (their SAM2 memory settings,
    :func:`~segzero_export.sam2_memory_onnx.tracking_config`, are stored as JSON in the memory
    attention graph's metadata under ``segzero.tracking``).

    ``config`` is a SAM2 config name (``sam2.1_hiera_t``; default: inferred from the file
    name). Returns ``{"encoder": path, "decoder": path[, "memory_attention": path,
    "memory_encoder": path]}``. All files are written to a temporary folder first and moved
    into ``out_dir`` only when all are complete and valid.
    Raises ``FileNotFoundError`` for a missing checkpoint and ``ValueError`` for a name with no
    SAM2 size, an unknown config, a checkpoint that does not match its config, or a config the
    tracking graphs do not support.
    """
    from .sam2_memory_onnx import TRACKING_METADATA_KEY, check_supported, tracking_config

    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {ckpt}")
    config = config or infer_config(ckpt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = ["load", "encoder", "decoder", *(["memory"] if memory else []), "check"]
    bar = tqdm(total=len(steps), desc="SAM2 -> ONNX", unit="step", disable=not progress)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".sam2_onnx.", dir=out))
    graphs = {"encoder": SAM2_ENCODER_FILE, "decoder": SAM2_DECODER_FILE}
    if memory:
        graphs.update(
            memory_attention=SAM2_MEMORY_ATTENTION_FILE, memory_encoder=SAM2_MEMORY_ENCODER_FILE
        )
    try:
        bar.set_postfix_str(f"load {config}")
        model = build_sam2_model(config, ckpt)
        if memory:
            check_supported(model)
        bar.update()
        bar.set_postfix_str("export encoder")
        _export(
            SAM2Encoder(model).eval(),
            (torch.zeros(1, 3, SAM2_SIZE, SAM2_SIZE),),
            tmp / SAM2_ENCODER_FILE,
            SAM2_ENCODER_INPUTS,
            SAM2_ENCODER_OUTPUTS,
        )
        bar.update()
        bar.set_postfix_str("export decoder")
        _export(
            SAM2Decoder(model).eval(),
            _example_decoder_inputs(),
            tmp / SAM2_DECODER_FILE,
            SAM2_DECODER_INPUTS,
            (*SAM2_DECODER_OUTPUTS, *SAM2_DECODER_TRACK_OUTPUTS),
            DECODER_DYNAMIC_AXES,
        )
        bar.update()
        if memory:
            bar.set_postfix_str("export memory attention + encoder")
            _export_memory(model, tmp)
            bar.update()
        bar.set_postfix_str("check" + (" + slim" if simplify else ""))
        for name in graphs.values():
            _pin_and_check(tmp / name)
            if simplify:
                simplify_onnx(tmp / name, tmp / name)
        if memory:
            settings = json.dumps(tracking_config(model), sort_keys=True)
            _set_metadata(tmp / SAM2_MEMORY_ATTENTION_FILE, TRACKING_METADATA_KEY, settings)
        bar.update()
        paths = {}
        for key, name in graphs.items():
            os.replace(tmp / name, out / name)
            paths[key] = out / name
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s in %.1f s", config, out, time.perf_counter() - t0)
    return paths
