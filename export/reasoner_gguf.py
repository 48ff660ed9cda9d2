"""Qwen2.5-VL / Qwen3-VL language model (HF safetensors) -> llama.cpp GGUF (``qwen2vl`` /
``qwen3vl``).

The file matches what llama.cpp's own ``convert_hf_to_gguf.py`` (``Qwen2VLModel``;
``Qwen3VLTextModel`` for Qwen3-VL) writes for the same checkpoint: tensor names are looked up
in gguf-py's ``TensorNameMap`` for ``MODEL_ARCH.QWEN2VL`` / ``MODEL_ARCH.QWEN3VL``, 1-D tensors
stay F32, and every tensor's bytes are identical (tests/test_reasoner_gguf_llama_cpp_parity.py,
tests/test_reasoner_qwen3vl_export.py). Qwen3-VL's text model differs from Qwen2.5-VL's in
what the GGUF holds: no q/k/v biases, per-head q/k RMS norms (``attn_q_norm``/``attn_k_norm``),
an explicit ``head_dim`` (``attention.key_length``/``value_length``) and the number of
deepstack layers the vision tower feeds (``n_deepstack_layers``). Tensors are streamed one at
a time (a 7B checkpoint never sits in memory whole); the vision tower (``visual.*``) is left
to the mmproj converter. Both the transformers-4 layout (``model.layers.*``, flat config) and the
transformers-5 layout (``model.language_model.*``, nested ``text_config``) are read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from segzero_edge.fileio import atomic_path
from segzero_export.gguf_tokenizer import add_vocab, read_qwen2_vocab
from segzero_export.hf_source import (
    QWEN3VL_ARCHITECTURE,
    check_architecture,
    read_config,
    safetensors_files,
)

ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2VL]  # "qwen2vl"
QWEN3VL_ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3VL]  # "qwen3vl"
_MODEL_ARCHS = {ARCH: gguf.MODEL_ARCH.QWEN2VL, QWEN3VL_ARCH: gguf.MODEL_ARCH.QWEN3VL}

OUTTYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
}

F16_MAX = 65504.0

_T = gguf.MODEL_TENSOR
_BIASED = (_T.ATTN_Q, _T.ATTN_K, _T.ATTN_V)
"""The only biases llama.cpp's qwen2vl graph loads (src/llama-model.cpp, LLM_ARCH_QWEN2VL)."""
_ARCH_BIASED: dict[str, tuple[gguf.MODEL_TENSOR, ...]] = {ARCH: _BIASED, QWEN3VL_ARCH: ()}
"""Biases each graph loads (the qwen3vl graph, like qwen3, takes none)."""
_NAME_SUFFIXES = (".weight", ".bias")


@dataclass(frozen=True)
class TextHParams:
    """The language-model hyper-parameters the GGUF needs (field names of transformers'
    ``Qwen2_5_VLTextConfig`` / ``Qwen3VLTextConfig``; ``rope_theta`` is the RoPE frequency
    base). ``arch``: the GGUF architecture (``qwen2vl`` / ``qwen3vl``); ``explicit_head_dim``:
    the config's ``head_dim`` when it states one (Qwen3-VL), else None (hidden / heads);
    ``n_deepstack``: vision layers fed into the first text layers (Qwen3-VL), else 0."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    rms_norm_eps: float
    rope_theta: float
    mrope_section: list[int]
    context_length: int
    tie_word_embeddings: bool
    arch: str = ARCH
    explicit_head_dim: int | None = None
    n_deepstack: int = 0

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_heads


def text_hparams(config: dict[str, Any]) -> TextHParams:
    """Language-model hyper-parameters from a flat (transformers 4) or nested (5) config.

    Raises ``ValueError`` naming a missing field, or an ``mrope_section`` that does not list
    1-4 sizes summing to ``head_dim / 2`` (llama.cpp's ``rope.dimension_sections``).
    """
    text = {k: v for k, v in config.items() if k not in ("text_config", "vision_config")}
    text.update(config.get("text_config") or {})
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    qwen3 = config.get("model_type") == "qwen3_vl" or QWEN3VL_ARCHITECTURE in (
        config.get("architectures") or []
    )
    vision = config.get("vision_config") or {}
    try:
        hp = TextHParams(
            vocab_size=int(text["vocab_size"]),
            hidden_size=int(text["hidden_size"]),
            intermediate_size=int(text["intermediate_size"]),
            num_layers=int(text["num_hidden_layers"]),
            num_heads=int(text["num_attention_heads"]),
            num_kv_heads=int(text.get("num_key_value_heads") or text["num_attention_heads"]),
            rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 1000000.0))),
            mrope_section=[int(s) for s in rope.get("mrope_section") or []],
            context_length=int(text.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(
                config.get("tie_word_embeddings") or text.get("tie_word_embeddings", False)
            ),
            arch=QWEN3VL_ARCH if qwen3 else ARCH,
            explicit_head_dim=int(text["head_dim"]) if text.get("head_dim") else None,
            n_deepstack=len(vision.get("deepstack_visual_indexes") or []) if qwen3 else 0,
        )
    except KeyError as e:
        raise ValueError(f"config.json lacks the text-model field {e.args[0]!r}") from e
    if not hp.mrope_section or len(hp.mrope_section) > 4:
        raise ValueError(
            f"config.json: rope mrope_section must list 1-4 sizes, got {hp.mrope_section!r}"
        )
    if sum(hp.mrope_section) * 2 != hp.head_dim:
        raise ValueError(
            f"config.json: mrope_section {hp.mrope_section} sums to {sum(hp.mrope_section)}, "
            f"expected head_dim/2 = {hp.head_dim // 2}"
        )
    return hp


@functools.lru_cache(maxsize=4)
def tensor_name_map(n_blocks: int, arch: str = ARCH) -> gguf.TensorNameMap:
    """gguf-py's HF -> GGUF name map of ``arch`` (``qwen2vl`` / ``qwen3vl``) for ``n_blocks``
    layers."""
    return gguf.get_tensor_name_map(_MODEL_ARCHS[arch], n_blocks)


def gguf_tensor_name(hf_name: str, n_blocks: int = 128, arch: str = ARCH) -> str | None:
    """GGUF name of a language-model tensor, as llama.cpp's converter maps it.

    ``visual.*`` tensors give None (the mmproj holds them); ``language_model.`` is dropped from
    transformers-5 names (llama.cpp's ``TextModel.filter_tensors``); the rest is looked up in
    :func:`tensor_name_map`. Raises ``ValueError`` for a name the ``arch`` graph does not
    load (including layers ``>= n_blocks``).
    """
    if "visual." in hf_name:
        return None
    name = hf_name.replace("language_model.", "")
    found = tensor_name_map(n_blocks, arch).get_type_and_name(name, try_suffixes=_NAME_SUFFIXES)
    if found is None or (name.endswith(".bias") and found[0] not in _ARCH_BIASED[arch]):
        raise ValueError(f"unexpected tensor in the checkpoint: {hf_name}")
    return found[1]


def _gguf_name(tensor: gguf.MODEL_TENSOR, bid: int | None = None, suffix: str = "weight") -> str:
    base = gguf.TENSOR_NAMES[tensor]
    return f"{base.format(bid=bid) if bid is not None else base}.{suffix}"


def _expected_shapes(hp: TextHParams) -> dict[str, tuple[int, ...]]:
    """GGUF name -> HF (row-major) shape of every tensor the ``hp.arch`` graph needs."""
    h, ff, d = hp.hidden_size, hp.intermediate_size, hp.head_dim
    q, kv = hp.num_heads * d, hp.num_kv_heads * d
    shapes: dict[str, tuple[int, ...]] = {
        _gguf_name(_T.TOKEN_EMBD): (hp.vocab_size, h),
        _gguf_name(_T.OUTPUT_NORM): (h,),
    }
    if not hp.tie_word_embeddings:
        shapes[_gguf_name(_T.OUTPUT)] = (hp.vocab_size, h)
    biased = _ARCH_BIASED[hp.arch]
    for i in range(hp.num_layers):
        if hp.arch == QWEN3VL_ARCH:  # per-head RMS norms of q and k
            shapes[_gguf_name(_T.ATTN_Q_NORM, i)] = (d,)
            shapes[_gguf_name(_T.ATTN_K_NORM, i)] = (d,)
        for tensor, shape in (
            (_T.ATTN_NORM, (h,)),
            (_T.ATTN_Q, (q, h)),
            (_T.ATTN_K, (kv, h)),
            (_T.ATTN_V, (kv, h)),
            (_T.ATTN_OUT, (h, q)),
            (_T.FFN_NORM, (h,)),
            (_T.FFN_GATE, (ff, h)),
            (_T.FFN_UP, (ff, h)),
            (_T.FFN_DOWN, (h, ff)),
        ):
            shapes[_gguf_name(tensor, i)] = shape
            if tensor in biased:
                shapes[_gguf_name(tensor, i, "bias")] = shape[:1]
    return shapes


@dataclass(frozen=True)
class _Plan:
    gguf_name: str
    hf_name: str
    file: Path
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType


def _plan(model_dir: Path, hp: TextHParams, outtype: str) -> list[_Plan]:
    from safetensors import safe_open

    found: dict[str, tuple[str, Path, tuple[int, ...]]] = {}
    output = _gguf_name(_T.OUTPUT)
    for file in safetensors_files(model_dir):
        with safe_open(str(file), framework="pt") as f:
            for hf_name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                try:
                    name = gguf_tensor_name(hf_name, hp.num_layers, hp.arch)
                except ValueError as e:
                    raise ValueError(f"{e} (num_hidden_layers={hp.num_layers})") from None
                if name is None:
                    continue
                if hp.tie_word_embeddings and name == output:
                    continue  # tied: llama.cpp reuses token_embd
                shape = tuple(f.get_slice(hf_name).get_shape())
                found[name] = (hf_name, file, shape)
    expected = _expected_shapes(hp)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ValueError(
            f"{model_dir}: checkpoint lacks tensors {missing[:8]}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ValueError(f"{model_dir}: tensors the {hp.arch} graph does not take: {extra}")
    plans = []
    for name, want in expected.items():
        hf_name, file, shape = found[name]
        if shape != want:
            raise ValueError(f"{hf_name}: shape {list(shape)} does not match config {list(want)}")
        if outtype == "f32" or len(shape) == 1:
            qtype = gguf.GGMLQuantizationType.F32  # norms and biases stay F32, as llama.cpp expects
        elif outtype == "f16":
            qtype = gguf.GGMLQuantizationType.F16
        else:
            qtype = gguf.GGMLQuantizationType.BF16
        plans.append(_Plan(name, hf_name, file, shape, qtype))
    return plans


def _encode(data: np.ndarray, plan: _Plan) -> np.ndarray:
    if not np.isfinite(data).all():
        raise ValueError(f"{plan.hf_name}: the checkpoint holds NaN or infinite values")
    if plan.qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if plan.qtype == gguf.GGMLQuantizationType.F16:
        peak = float(np.abs(data).max()) if data.size else 0.0
        if peak > F16_MAX:
            raise ValueError(
                f"{plan.hf_name}: values beyond the float16 range (max |x| = {peak:.3g}); "
                "convert with outtype='bf16' or 'f32'"
            )
        return data.astype(np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), plan.qtype)


def _nbytes(plan: _Plan) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[plan.qtype]
    return int(np.prod(plan.shape)) // block * type_size


def _write_metadata(writer: gguf.GGUFWriter, hp: TextHParams, name: str, outtype: str) -> None:
    writer.add_name(name)
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.hidden_size)
    writer.add_block_count(hp.num_layers)
    writer.add_feed_forward_length(hp.intermediate_size)
    writer.add_head_count(hp.num_heads)
    writer.add_head_count_kv(hp.num_kv_heads)
    writer.add_layer_norm_rms_eps(hp.rms_norm_eps)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_sections(hp.mrope_section + [0] * (4 - len(hp.mrope_section)))
    if hp.explicit_head_dim is not None:  # llama.cpp's TextModel writes them when stated
        writer.add_key_length(hp.explicit_head_dim)
        writer.add_value_length(hp.explicit_head_dim)
    if hp.arch == QWEN3VL_ARCH:
        writer.add_num_deepstack_layers(hp.n_deepstack)
    writer.add_file_type(OUTTYPES[outtype])


def model_name(model_dir: Path) -> str:
    """A readable model name: the repo of a hub cache snapshot, else the folder name."""
    model_dir = Path(model_dir).resolve()
    if model_dir.parent.name == "snapshots" and model_dir.parent.parent.name.startswith("models--"):
        return model_dir.parent.parent.name.split("--")[-1]
    return model_dir.name


def convert_text_model(
    src_dir: Path | str,
    out_path: Path | str,
    *,
    outtype: str = "f16",
    progress: bool = True,
    name: str | None = None,
) -> Path:
    """Write the language model of ``src_dir`` as a GGUF at ``out_path``: ``qwen2vl`` for
    Qwen2.5-VL, ``qwen3vl`` for Qwen3-VL.

    ``outtype``: "f16" (default; 2-D weights F16, norms/biases F32), "bf16" or "f32" (the
    ``--outtype`` of llama.cpp's ``convert_hf_to_gguf.py``, whose tensors this matches bit for
    bit). ``name`` goes to ``general.name`` (default: the model's folder or hub repo name).
    The file is written next to ``out_path`` under a temporary name and renamed when complete.

    Raises ``FileNotFoundError`` (no config.json, weights or tokenizer.json) and
    ``ValueError`` (unknown outtype, another architecture, tensors missing or mis-shaped for
    the config, values beyond float16, a tokenizer llama.cpp would not reproduce).
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"unknown outtype {outtype!r}; choose one of {sorted(OUTTYPES)}")
    src_dir, out_path = Path(src_dir), Path(out_path)
    config = read_config(src_dir)
    check_architecture(config, src_dir / "config.json")
    hp = text_hparams(config)
    vocab = read_qwen2_vocab(src_dir, hp.vocab_size)
    plans = _plan(src_dir, hp, outtype)

    with atomic_path(out_path) as tmp:
        label = name or model_name(src_dir)
        _write_file(tmp, out_path.name, hp, vocab, plans, label, outtype, progress)
    return out_path


def _write_file(
    tmp: Path,
    file_name: str,
    hp: TextHParams,
    vocab: Any,
    plans: list[Any],
    name: str,
    outtype: str,
    progress: bool,
) -> None:
    """Stream the header, metadata and every tensor of ``plans`` into ``tmp``."""
    from safetensors import safe_open
    from tqdm import tqdm

    writer = gguf.GGUFWriter(tmp, hp.arch)
    try:
        _write_metadata(writer, hp, name, outtype)
        add_vocab(writer, vocab)
        for p in plans:
            if p.qtype == gguf.GGMLQuantizationType.BF16:
                byte_shape = (*p.shape[:-1], _nbytes(p) // int(np.prod(p.shape[:-1])))
                writer.add_tensor_info(
                    p.gguf_name, byte_shape, np.dtype(np.uint8), _nbytes(p), p.qtype
                )
            else:
                dtype = np.dtype(
                    np.float32 if p.qtype == gguf.GGMLQuantizationType.F32 else np.float16
                )
                writer.add_tensor_info(p.gguf_name, p.shape, dtype, _nbytes(p))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(_nbytes(p) for p in plans)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"GGUF {file_name}",
            disable=not progress,
        ) as bar:
            for p in plans:
                with safe_open(str(p.file), framework="pt") as f:
                    data = f.get_tensor(p.hf_name).float().numpy()
                writer.write_tensor_data(_encode(data, p))
                bar.update(_nbytes(p))
    finally:
        writer.close()
