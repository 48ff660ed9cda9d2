"""Qwen3-VL vision tower, merger and deepstack mergers -> llama.cpp ``mmproj`` GGUF
(``qwen3vl_merger``).

The layout is what llama.cpp's ``tools/mtmd`` (clip.cpp, qwen3vl graph) loads and what its
``convert_hf_to_gguf.py --mmproj`` (``Qwen3VLVisionModel``) writes, tensor for tensor
(tests/test_reasoner_qwen3vl_export.py):

- metadata ``clip.projector_type = "qwen3vl_merger"``, ``clip.use_gelu``, ``clip.vision.*``
  (sizes, ``image_size = sqrt(num_position_embeddings) * patch_size``, the *text* model's
  ``rms_norm_eps`` as the LayerNorm eps, image mean/std, ``spatial_merge_size``,
  ``is_deepstack_layers``: one flag per vision block);
- ``v.patch_embd.weight`` / ``.weight.1`` (the Conv3D split per frame) and ``v.patch_embd.bias``;
  ``v.position_embd.weight`` (the learned grid, always F32);
- ``v.blk.N.{ln1,ln2}`` LayerNorms (weight + bias), the fused ``attn_qkv``, ``attn_out``,
  ``ffn_up`` / ``ffn_down`` (``linear_fc1`` / ``linear_fc2``, GELU, no gate);
- ``v.post_ln`` + ``mm.0`` / ``mm.2`` (the merger's norm, ``linear_fc1``, ``linear_fc2``);
- ``v.deepstack.N.{norm,fc1,fc2}`` for each vision block N in ``deepstack_visual_indexes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

QWEN3VL_MODEL_TYPE = "qwen3_vl"
_DEFAULT_MEAN = (0.5, 0.5, 0.5)
_DEFAULT_STD = (0.5, 0.5, 0.5)
_GELU_ACTS = ("gelu_pytorch_tanh", "gelu")  # llama.cpp's clip GELU is the tanh approximation


def vision_params(
    config: dict[str, Any], src_dir: Path, pre: dict[str, Any], error: type[ValueError]
) -> dict[str, Any]:
    """Validated vision hyper-parameters of a Qwen3-VL ``config`` (``pre``: the folder's
    preprocessor_config.json, possibly empty). Raises ``error`` naming every unsupported
    value."""
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        raise error(f"{src_dir}/config.json has no vision_config")
    text = config.get("text_config") or {}

    def need(key: str) -> Any:
        if key not in vc:
            raise error(f"{src_dir}/config.json: vision_config.{key} is missing")
        return vc[key]

    p: dict[str, Any] = {
        "hidden": int(need("hidden_size")),
        "ffn": int(need("intermediate_size")),
        "depth": int(need("depth")),
        "heads": int(need("num_heads")),
        "patch": int(vc.get("patch_size", 16)),
        "merge": int(vc.get("spatial_merge_size", 2)),
        "temporal": int(vc.get("temporal_patch_size", 2)),
        "out": int(vc.get("out_hidden_size", text.get("hidden_size", 0))),
        "act": vc.get("hidden_act", "gelu_pytorch_tanh"),
        "n_pos": int(vc.get("num_position_embeddings", 2304)),
        "deepstack": [int(i) for i in vc.get("deepstack_visual_indexes") or []],
        "eps": float(text.get("rms_norm_eps", 1e-6)),
    }
    problems = []
    if p["temporal"] != 2:
        problems.append(f"temporal_patch_size {p['temporal']} (llama.cpp supports 2)")
    if p["merge"] != 2:
        problems.append(f"spatial_merge_size {p['merge']} (llama.cpp's qwen3vl graph uses 2)")
    if p["act"] not in _GELU_ACTS:
        problems.append(f"hidden_act {p['act']!r} (qwen3vl_merger uses GELU)")
    if p["hidden"] % p["heads"]:
        problems.append(f"hidden_size {p['hidden']} is not a multiple of num_heads {p['heads']}")
    side = math.isqrt(p["n_pos"])
    if side * side != p["n_pos"]:
        problems.append(f"num_position_embeddings {p['n_pos']} is not a square grid")
    bad = [i for i in p["deepstack"] if not 0 <= i < p["depth"]]
    if bad:
        problems.append(f"deepstack_visual_indexes {bad} outside the {p['depth']} blocks")
    if text.get("hidden_size") and p["out"] != text["hidden_size"]:
        problems.append(f"out_hidden_size {p['out']} != text hidden_size {text['hidden_size']}")
    if problems:
        raise error(f"{src_dir}: unsupported vision config: " + "; ".join(problems))
    p["image_size"] = int(math.sqrt(p["n_pos"]) * p["patch"])  # as llama.cpp computes it
    p["mean"] = [float(v) for v in pre.get("image_mean", _DEFAULT_MEAN)]
    p["std"] = [float(v) for v in pre.get("image_std", _DEFAULT_STD)]
    return p


def mapped(
    hf: dict[str, Any], p: dict[str, Any], error: type[ValueError]
) -> Iterator[tuple[str, Any]]:
    """(gguf name, float32 torch tensor) pairs in llama.cpp's naming; ``hf`` (``visual.``
    prefix stripped) is emptied, and ``error`` raised for a missing, mis-shaped or unexpected
    tensor."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, max(p["depth"], 3))
    T, N = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES

    def take(key: str) -> Any:
        try:
            return hf.pop(key)
        except KeyError:
            raise error(f"checkpoint is missing tensor visual.{key}") from None

    def mapped_name(key: str) -> str:
        found = names.get_name(f"visual.{key}", try_suffixes=(".weight", ".bias"))
        if found is None:
            raise error(f"gguf-py has no mmproj name for visual.{key}")
        return found

    conv = take("patch_embed.proj.weight")
    expect = (p["hidden"], 3, 2, p["patch"], p["patch"])
    if tuple(conv.shape) != expect:
        raise error(f"patch_embed.proj.weight has shape {tuple(conv.shape)}, want {expect}")
    patch = N[T.V_ENC_EMBD_PATCH]
    yield f"{patch}.weight", conv[:, :, 0].contiguous()
    yield f"{patch}.weight.1", conv[:, :, 1].contiguous()
    yield f"{patch}.bias", take("patch_embed.proj.bias")
    pos = take("pos_embed.weight")
    if tuple(pos.shape) != (p["n_pos"], p["hidden"]):
        want = (p["n_pos"], p["hidden"])
        raise error(f"pos_embed.weight has shape {tuple(pos.shape)}, want {want}")
    yield mapped_name("pos_embed.weight"), pos

    for i in range(p["depth"]):
        for key in ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2", "norm1", "norm2"):
            for part in ("weight", "bias"):
                name = f"blocks.{i}.{key}.{part}"
                yield mapped_name(name), take(name)

    for part in ("weight", "bias"):
        yield f"{N[T.V_POST_NORM]}.{part}", take(f"merger.norm.{part}")
    for fc, idx in (("linear_fc1", 0), ("linear_fc2", 2)):
        for part in ("weight", "bias"):
            yield f"{N[T.V_MMPROJ].format(bid=idx)}.{part}", take(f"merger.{fc}.{part}")

    for j, block in enumerate(p["deepstack"]):
        parts = (("norm", T.V_DS_NORM), ("linear_fc1", T.V_DS_FC1), ("linear_fc2", T.V_DS_FC2))
        for src, tensor in parts:
            for part in ("weight", "bias"):
                yield (
                    f"{N[tensor].format(bid=block)}.{part}",
                    take(f"deepstack_merger_list.{j}.{src}.{part}"),
                )
    if hf:
        raise error(f"unexpected vision tensors not exported: {sorted(hf)[:8]}")


def is_position_embedding(name: str) -> bool:
    """llama.cpp's converter keeps ``v.position_embd`` in F32 whatever the outtype."""
    import gguf

    return name.startswith(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.V_ENC_EMBD_POS])


def write_metadata(w: Any, p: dict[str, Any]) -> None:
    """The ``clip.*`` keys llama.cpp's ``Qwen3VLVisionModel`` writes (file type and name are
    the caller's)."""
    import gguf

    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(gguf.VisionProjectorType.QWEN3VL)
    w.add_vision_use_gelu(True)
    w.add_vision_projection_dim(p["out"])
    w.add_vision_image_size(p["image_size"])
    w.add_vision_patch_size(p["patch"])
    w.add_vision_embedding_length(p["hidden"])
    w.add_vision_feed_forward_length(p["ffn"])
    w.add_vision_block_count(p["depth"])
    w.add_vision_head_count(p["heads"])
    w.add_vision_attention_layernorm_eps(p["eps"])
    w.add_vision_image_mean(p["mean"])
    w.add_vision_image_std(p["std"])
    w.add_vision_spatial_merge_size(p["merge"])
    w.add_vision_is_deepstack_layers([i in p["deepstack"] for i in range(p["depth"])])
