"""Qwen2.5-VL vision tower + patch merger -> llama.cpp ``mmproj`` GGUF (``qwen2.5vl_merger``).

(A Qwen3-VL folder goes to ``qwen3vl_merger`` through :mod:`segzero_export.mmproj_qwen3vl`;
:func:`convert_mmproj` picks the layout from ``config.json``'s ``model_type``.)

The layout is what llama.cpp's ``tools/mtmd`` (clip.cpp, qwen2vl graph) loads:

- metadata ``clip.projector_type = "qwen2.5vl_merger"``, ``clip.has_vision_encoder``,
  ``clip.use_silu`` and ``clip.vision.*`` (sizes, RMS eps, image mean/std, ``n_wa_pattern``,
  ``spatial_merge_size``);
- ``v.patch_embd.weight`` / ``v.patch_embd.weight.1``: the Conv3D patch embedding (temporal
  kernel 2) split into two Conv2D kernels, one per frame (a still image is fed as two equal
  frames, so their sum equals the Conv3D);
- ``v.blk.N.{ln1,ln2}`` RMS norms, ``attn_{q,k,v}`` split from the fused ``qkv``, ``attn_out``,
  ``ffn_{gate,up,down}``; ``v.post_ln`` (the merger's ``ln_q``); ``mm.0`` / ``mm.2`` (merger MLP).

As llama.cpp's ``convert_hf_to_gguf.py --mmproj`` (``Qwen2VLVisionModel``) does, names are
looked up in gguf-py's ``TensorNameMap`` for ``MODEL_ARCH.MMPROJ`` after the same two splits
(qkv -> q/k/v, Conv3D -> two Conv2D); every tensor's bytes equal that converter's
(tests/test_reasoner_gguf_llama_cpp_parity.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.fileio import atomic_path

from . import mmproj_qwen3vl
from .hf_source import safetensors_files

OUTTYPES = ("f16", "q8_0", "f32")
LLAMA_CPP_WINDOW_SIZE = 112
"""llama.cpp's Qwen2.5-VL graph hard-codes a 112-pixel attention window (HF's default)."""

_VISUAL_PREFIXES = ("visual.", "model.visual.")
_DEFAULT_MEAN = (0.48145466, 0.4578275, 0.40821073)
_DEFAULT_STD = (0.26862954, 0.26130258, 0.27577711)
_VISION_RMS_EPS = 1e-6  # transformers builds the vision RMSNorms with a fixed eps of 1e-6


class MmprojExportError(ValueError):
    """The source folder cannot be exported as a Qwen2.5-VL mmproj."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise MmprojExportError(f"missing {path.name} in {path.parent}") from None
    except json.JSONDecodeError as e:
        raise MmprojExportError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MmprojExportError(f"{path} does not hold a JSON object")
    return data


def _vision_params(src_dir: Path) -> dict[str, Any]:
    """Validated vision hyper-parameters of a Qwen2.5-VL or Qwen3-VL folder (``"qwen3"``:
    whether it is Qwen3-VL)."""
    config = _read_json(src_dir / "config.json")
    if config.get("model_type") == mmproj_qwen3vl.QWEN3VL_MODEL_TYPE:
        pre_path = src_dir / "preprocessor_config.json"
        pre = _read_json(pre_path) if pre_path.is_file() else {}
        p = mmproj_qwen3vl.vision_params(config, src_dir, pre, MmprojExportError)
        return {**p, "qwen3": True}
    if config.get("model_type") != "qwen2_5_vl":
        raise MmprojExportError(
            f"{src_dir}: model_type is {config.get('model_type')!r}, expected 'qwen2_5_vl' "
            f"or '{mmproj_qwen3vl.QWEN3VL_MODEL_TYPE}'"
        )
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        raise MmprojExportError(f"{src_dir}/config.json has no vision_config")
    text_hidden = (config.get("text_config") or {}).get("hidden_size", config.get("hidden_size"))

    def need(key: str) -> Any:
        if key not in vc:
            raise MmprojExportError(f"{src_dir}/config.json: vision_config.{key} is missing")
        return vc[key]

    p = {
        "hidden": int(need("hidden_size")),
        "ffn": int(need("intermediate_size")),
        "depth": int(need("depth")),
        "heads": int(need("num_heads")),
        "patch": int(vc.get("patch_size", 14)),
        "merge": int(vc.get("spatial_merge_size", 2)),
        "temporal": int(vc.get("temporal_patch_size", 2)),
        "window": int(vc.get("window_size", LLAMA_CPP_WINDOW_SIZE)),
        "out": int(vc.get("out_hidden_size", text_hidden or 0)),
        "act": vc.get("hidden_act", "silu"),
        "fullatt": list(vc.get("fullatt_block_indexes") or []),
    }
    problems = []
    if p["temporal"] != 2:
        problems.append(f"temporal_patch_size {p['temporal']} (llama.cpp supports 2)")
    if p["merge"] != 2:
        problems.append(f"spatial_merge_size {p['merge']} (llama.cpp's window code assumes 2)")
    if p["window"] != LLAMA_CPP_WINDOW_SIZE:
        problems.append(f"window_size {p['window']} (llama.cpp uses {LLAMA_CPP_WINDOW_SIZE})")
    if p["act"] != "silu":
        problems.append(f"hidden_act {p['act']!r} (qwen2.5vl_merger uses silu)")
    if p["hidden"] % p["heads"] or (p["hidden"] // p["heads"]) % 4:
        problems.append(f"head dim {p['hidden']}/{p['heads']} is not a multiple of 4 (M-RoPE)")
    if p["ffn"] == p["hidden"]:
        problems.append(
            "intermediate_size == hidden_size: llama.cpp would take ffn_up/ffn_down as swapped"
        )
    if text_hidden and p["out"] != text_hidden:
        problems.append(f"out_hidden_size {p['out']} != text hidden_size {text_hidden}")
    if not p["fullatt"]:
        problems.append("fullatt_block_indexes is empty (needed for n_wa_pattern)")
    else:
        n_wa = p["fullatt"][0] + 1
        expected = list(range(n_wa - 1, p["depth"], n_wa))
        if p["fullatt"] != expected:
            problems.append(
                f"fullatt_block_indexes {p['fullatt']} is not every {n_wa}th block {expected}"
            )
        p["n_wa_pattern"] = n_wa
    if problems:
        raise MmprojExportError(f"{src_dir}: unsupported vision config: " + "; ".join(problems))

    pre_path = src_dir / "preprocessor_config.json"
    pre = _read_json(pre_path) if pre_path.is_file() else {}
    p["mean"] = [float(v) for v in pre.get("image_mean", _DEFAULT_MEAN)]
    p["std"] = [float(v) for v in pre.get("image_std", _DEFAULT_STD)]
    p["qwen3"] = False
    return p


def _weight_files(src_dir: Path) -> list[Path]:
    try:
        return safetensors_files(src_dir)
    except FileNotFoundError as e:
        raise MmprojExportError(str(e)) from None


def _visual_tensors(src_dir: Path) -> dict[str, Any]:
    """All ``visual.*`` tensors (prefix stripped) as float32 torch tensors."""
    import torch
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for path in _weight_files(src_dir):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                for prefix in _VISUAL_PREFIXES:
                    if key.startswith(prefix):
                        out[key[len(prefix) :]] = f.get_tensor(key).to(torch.float32)
    if not out:
        raise MmprojExportError(f"{src_dir}: no visual.* tensors (not a Qwen2.5-VL checkpoint?)")
    return out


def _mapped(hf: dict[str, Any], p: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(gguf name, float32 torch tensor) pairs in llama.cpp's naming."""
    import gguf

    # llama.cpp's MmprojModel maps with n_blocks = depth; the merger MLP's layers 0 and 2 are
    # looked up as blocks too, hence at least 3.
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, max(p["depth"], 3))

    def gguf_name(key: str) -> str:
        found = names.get_name(f"visual.{key}", try_suffixes=(".weight", ".bias"))
        if found is None:
            raise MmprojExportError(f"gguf-py has no mmproj name for visual.{key}")
        return found

    def take(key: str) -> Any:
        try:
            return hf.pop(key)
        except KeyError:
            raise MmprojExportError(f"checkpoint is missing tensor visual.{key}") from None

    conv = take("patch_embed.proj.weight")
    expect = (p["hidden"], 3, 2, p["patch"], p["patch"])
    if tuple(conv.shape) != expect:
        raise MmprojExportError(
            f"patch_embed.proj.weight has shape {tuple(conv.shape)}, want {expect}"
        )
    patch = gguf_name("patch_embed.proj.weight")
    yield patch, conv[:, :, 0].contiguous()
    yield f"{patch}.1", conv[:, :, 1].contiguous()

    h = p["hidden"]
    for i in range(p["depth"]):
        b = f"blocks.{i}."
        for part in ("weight", "bias"):
            qkv = take(f"{b}attn.qkv.{part}")
            if qkv.shape[0] != 3 * h:
                raise MmprojExportError(f"{b}attn.qkv.{part} has {qkv.shape[0]} rows, want {3 * h}")
            for j, n in enumerate("qkv"):
                yield gguf_name(f"{b}attn.{n}.{part}"), qkv[j * h : (j + 1) * h].contiguous()
            for key in ("attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                yield gguf_name(f"{b}{key}.{part}"), take(f"{b}{key}.{part}")
        for key in ("norm1", "norm2"):
            yield gguf_name(f"{b}{key}.weight"), take(f"{b}{key}.weight")

    for key in (
        "merger.ln_q.weight",
        *(f"merger.mlp.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")),
    ):
        yield gguf_name(key), take(key)
    if hf:
        raise MmprojExportError(f"unexpected vision tensors not exported: {sorted(hf)[:8]}")


def _to_numpy(t: Any, name: str, outtype: str) -> tuple[np.ndarray, Any]:
    """The stored array and its GGML type (None: numpy's). Q8_0 (gguf-py's quantizer, what
    llama.cpp's ``convert_hf_to_gguf.py --outtype q8_0`` writes) goes to the 2-D matrices
    whose rows are whole 32-value blocks; the patch convolution stays F16 (llama.cpp's
    im2col path reads F16/F32 kernels), norms and biases F32."""
    import gguf

    arr = t.float().numpy() if hasattr(t, "float") else np.asarray(t, np.float32)
    if mmproj_qwen3vl.is_position_embedding(name):  # llama.cpp keeps it F32 at every outtype
        return arr.astype(np.float32), None
    if outtype == "q8_0" and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
        q = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(arr.astype(np.float32), q), q
    if outtype in ("f16", "q8_0") and arr.ndim >= 2:
        return arr.astype(np.float16), None
    return arr.astype(np.float32), None


def _write(src_dir: Path, tmp: Path, outtype: str, progress: bool) -> None:
    import gguf

    p = _vision_params(src_dir)
    hf = _visual_tensors(src_dir)
    w = gguf.GGUFWriter(str(tmp), arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name(f"{src_dir.name} vision")
    ftype = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "f32": gguf.LlamaFileType.ALL_F32,
    }[outtype]
    w.add_file_type(int(ftype))
    if p["qwen3"]:
        mmproj_qwen3vl.write_metadata(w, p)
        tensors = mmproj_qwen3vl.mapped(hf, p, MmprojExportError)
    else:
        _write_qwen25_metadata(w, p)
        tensors = _mapped(hf, p)
    for name, tensor in tensors:
        arr, raw = _to_numpy(tensor, name, outtype)
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=progress)
    w.close()


def _write_qwen25_metadata(w: Any, p: dict[str, Any]) -> None:
    import gguf

    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(gguf.VisionProjectorType.QWEN25VL)
    w.add_vision_use_silu(True)
    w.add_vision_projection_dim(p["out"])
    w.add_vision_image_size(560)  # informational: Qwen2.5-VL takes dynamic resolutions
    w.add_vision_patch_size(p["patch"])
    w.add_vision_embedding_length(p["hidden"])
    w.add_vision_feed_forward_length(p["ffn"])
    w.add_vision_block_count(p["depth"])
    w.add_vision_head_count(p["heads"])
    w.add_vision_attention_layernorm_eps(_VISION_RMS_EPS)
    w.add_vision_image_mean(p["mean"])
    w.add_vision_image_std(p["std"])
    w.add_vision_spatial_merge_size(p["merge"])
    w.add_vision_n_wa_pattern(p["n_wa_pattern"])


def convert_mmproj(
    src_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    outtype: str = "f16",
    progress: bool = True,
) -> Path:
    """Write the vision tower + merger of a local Qwen2.5-VL or Qwen3-VL HF folder as an mmproj
    GGUF (``qwen2.5vl_merger`` / ``qwen3vl_merger``, by ``config.json``'s ``model_type``).

    ``outtype``: ``"f16"`` (matrices F16, norms and biases F32), ``"q8_0"`` (matrices Q8_0
    by gguf-py's quantizer, the patch convolution F16; fidelity against F16:
    ``python -m segzero_bench.vision_encoder``) or ``"f32"``, as
    ``convert_hf_to_gguf.py --mmproj --outtype``. The file is written next to ``out_path``
    under a temporary name and renamed when complete. Raises :class:`MmprojExportError` (a
    ``ValueError``) for a missing folder or weights, a vision config llama.cpp's
    ``qwen2.5vl_merger`` / ``qwen3vl_merger`` graph does not support, or missing / unexpected
    vision tensors.
    """
    src = Path(src_dir)
    out = Path(out_path)
    if outtype not in OUTTYPES:
        raise MmprojExportError(f"outtype must be one of {OUTTYPES}, got {outtype!r}")
    if not src.is_dir():
        raise MmprojExportError(f"source model folder not found: {src}")
    if out.is_dir():
        raise MmprojExportError(f"output path is a directory: {out}")
    with atomic_path(out) as tmp:
        _write(src, tmp, outtype, progress)
    return out
