"""A tiny, randomly initialised Qwen3-VL checkpoint (real architecture, small sizes) for tests.

`build_tiny_qwen3vl` writes a complete Hugging Face folder (config, safetensors weights,
byte-level BPE tokenizer with Qwen3-VL's added tokens, image/video processor configs and a
chat template that formats one user turn as Qwen3-VL-Instruct's does) that loads fully offline
with ``Qwen3VLForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained``.
Everything is deterministic from the seed. The sizes keep what the real 2B/4B/8B models have
and the llama.cpp graph depends on: an explicit ``head_dim`` with per-head q/k RMS norms,
interleaved M-RoPE, a 16 px patch with a 2 x 2 merge, LayerNorm + GELU vision blocks with a
learned (interpolated) position embedding and deepstack mergers feeding the first text layers.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from segzero_edge.fileio import plain_modes

from .tiny_qwen import SPECIAL_TOKENS, VOCAB_MULTIPLE, _build_tokenizer, _init_weights

QWEN3VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + image_count.value | string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""One-turn subset of Qwen3-VL-Instruct's chat template: no default system prompt, the image
as ``<|vision_start|><|image_pad|><|vision_end|>`` (tools and videos left out)."""

QWEN3VL_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    *SPECIAL_TOKENS,
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
"""Qwen2.5-VL's added tokens plus the four Qwen3 adds (``<think>``/``</think>`` are added,
non-special tokens in Qwen3-VL's tokenizer, ids 151667/151668 there)."""

TEXT_HIDDEN = 256  # a multiple of 256: every row quantises to whole Q4_K super-blocks
TEXT_INTERMEDIATE = 512
TEXT_LAYERS = 3
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
TEXT_HEAD_DIM = 64  # explicit, as the real models (128 there, hidden / heads != head_dim at 4B)
MROPE_SECTION = (12, 10, 10)  # sums to head_dim / 2 = 32 (real: 24, 20, 20 for 128)

VISION_DEPTH = 4
VISION_HIDDEN = 64
VISION_HEADS = 2
VISION_INTERMEDIATE = 128
VISION_PATCH = 16
VISION_POSITIONS = 256  # a 16 x 16 learned grid (real: 48 x 48 = 2304)
DEEPSTACK_INDEXES = (1, 2)  # vision blocks whose output feeds text layers 0 and 1

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def _config(tokenizer: Any, tie_word_embeddings: bool) -> Any:
    from transformers import Qwen3VLConfig

    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    tid = tokenizer.convert_tokens_to_ids
    if sum(MROPE_SECTION) * 2 != TEXT_HEAD_DIM:
        raise RuntimeError(f"mrope_section {MROPE_SECTION} must sum to head_dim/2")
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": TEXT_INTERMEDIATE,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "head_dim": TEXT_HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": list(MROPE_SECTION),
            "mrope_interleaved": True,
        },
        "bos_token_id": tid("<|endoftext|>"),
        "eos_token_id": tid("<|im_end|>"),
        "pad_token_id": tid("<|endoftext|>"),
        "tie_word_embeddings": tie_word_embeddings,
    }
    vision_config = {
        "depth": VISION_DEPTH,
        "hidden_size": VISION_HIDDEN,
        "hidden_act": "gelu_pytorch_tanh",
        "intermediate_size": VISION_INTERMEDIATE,
        "num_heads": VISION_HEADS,
        "in_channels": 3,
        "patch_size": VISION_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": TEXT_HIDDEN,
        "num_position_embeddings": VISION_POSITIONS,
        "deepstack_visual_indexes": list(DEEPSTACK_INDEXES),
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=tie_word_embeddings,
    )


def _processor(tokenizer: Any) -> Any:
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    common = {
        "patch_size": VISION_PATCH,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
    }
    size = {"shortest_edge": 65536, "longest_edge": 16777216}  # Qwen3-VL's pixel bounds
    image_processor = Qwen2VLImageProcessor(size=size, **common)
    video_processor = Qwen3VLVideoProcessor(**common)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3VL_CHAT_TEMPLATE,
    )


def build_tiny_qwen3vl(out_dir: Path, seed: int = 0, *, tie_word_embeddings: bool = True) -> Path:
    """Write a tiny random Qwen3-VL Hugging Face folder to ``out_dir`` and return it.

    ``out_dir`` must not exist yet (it is written to a temp dir next to it, then renamed).
    Weights are stored in bfloat16 like the released checkpoints. ``tie_word_embeddings=True``
    matches Qwen3-VL-2B/4B (no ``lm_head`` tensor); False matches the 8B layout. Raises
    ``FileExistsError`` when ``out_dir`` exists.
    """
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"output folder already exists: {out_dir}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(seed, QWEN3VL_SPECIAL_TOKENS)
    config = _config(tokenizer, tie_word_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
    _init_weights(model, seed)
    torch.nn.Module.to(model, torch.bfloat16).eval()
    model.config.dtype = torch.bfloat16

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor = _processor(tokenizer)
        processor.save_pretrained(tmp)
        processor.image_processor.save_pretrained(tmp)  # preprocessor_config.json, as on the hub
        plain_modes(tmp)  # mkdtemp made it 0700
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
