"""A tiny, randomly initialised Qwen2.5-VL checkpoint (real architecture, small sizes) for tests.

`build_tiny_qwen25vl` writes a complete Hugging Face folder (config, safetensors weights,
byte-level BPE tokenizer with the Qwen2.5-VL special tokens, image/video processor configs and
the Qwen2.5-VL chat template) that loads fully offline with
``Qwen2_5_VLForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained``.
Everything is deterministic from the seed.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_edge.families import MULTI_OBJECT
from segzero_edge.fileio import plain_modes

QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The chat template shipped with Qwen2.5-VL-Instruct (default system prompt included)."""

# (token, special) in Qwen2.5-VL's order; they follow the BPE vocabulary as in the real model.
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

BPE_VOCAB_SIZE = 1200
"""Target size of the trained byte-level BPE vocabulary (bytes + merges, before specials)."""

VOCAB_MULTIPLE = 128
"""The model's vocab_size is padded up to a multiple of this (as Qwen pads 151665 -> 151936)."""

TEXT_HIDDEN = 256  # a multiple of 256: every row quantises to whole Q4_K super-blocks
TEXT_INTERMEDIATE = 512
TEXT_LAYERS = 2
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
MROPE_SECTION = (8, 12, 12)  # sums to head_dim / 2 = 32

VISION_DEPTH = 4
VISION_FULLATT = (1, 3)  # window attention on blocks 0 and 2 (n_wa_pattern = 2)
VISION_HIDDEN = 64
VISION_HEADS = 2
VISION_INTERMEDIATE = 128


@dataclass(frozen=True)
class QwenSizes:
    """Sizes of a small Qwen2.5-VL; the defaults are the tiny test model's. ``mrope_section``
    must sum to ``text_hidden / text_heads / 2``; ``vision_fullatt`` are the vision blocks with
    full attention (the others use window attention); ``rope_theta``: the language model's RoPE
    base (Qwen2.5-VL's 1e6 by default; M-RoPE gives the width section the lowest frequencies)."""

    bpe_vocab: int = BPE_VOCAB_SIZE
    text_hidden: int = TEXT_HIDDEN
    text_intermediate: int = TEXT_INTERMEDIATE
    text_layers: int = TEXT_LAYERS
    text_heads: int = TEXT_HEADS
    text_kv_heads: int = TEXT_KV_HEADS
    mrope_section: tuple[int, int, int] = MROPE_SECTION
    vision_depth: int = VISION_DEPTH
    vision_fullatt: tuple[int, ...] = VISION_FULLATT
    vision_hidden: int = VISION_HIDDEN
    vision_heads: int = VISION_HEADS
    vision_intermediate: int = VISION_INTERMEDIATE
    rope_theta: float = 1000000.0


TINY = QwenSizes()
"""The tiny test model's sizes."""

_QUERIES = (
    "the red car on the left",
    "The woman holding an umbrella.",
    "what can be used to cut the bread?",
    "the dog sitting next to the bicycle",
    "Find the object that people use to sit on!",
    "the largest window of the building",
    "the cat under the table",
    "the person wearing a blue shirt",
    "something that gives light at night",
    "the cup closest to the laptop",
)

_PROSE = (
    "The image shows a street with cars, people and trees. A red car is parked on the left "
    "side of the road, and a bicycle leans against the wall. The most closely matched object "
    "is the one in the centre of the picture. There are two dogs; the smaller one sits next "
    "to the bicycle while the other runs across the grass. The user asks for the object that "
    "can be used to cut bread, which is the knife lying on the wooden table near the cup. "
    "Compare the difference between the objects and find the one that matches the question. "
    "The woman holding an umbrella stands under the window of the large building. "
    "A lamp gives light at night; it stands in the corner of the room next to the sofa. "
    "The laptop is open on the desk, and a cup of coffee is placed to its right. "
    "I think the answer is the person wearing a blue shirt, because the shirt is blue "
    "and the person is standing in front of the door."
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_NOUNS = _words(
    "car bus truck bicycle motorcycle boat train plane person man woman child boy girl dog cat "
    "horse cow sheep bird elephant bear zebra giraffe umbrella bag backpack tie suitcase ball kite "
    "bottle glass cup fork knife spoon bowl banana apple sandwich orange pizza cake chair sofa "
    "plant bed table desk toilet television laptop mouse keyboard phone oven sink fridge book "
    "clock vase scissors window door wall floor road street tree grass sky building house roof "
    "lamp light shirt hat shoe box bench fence sign pole flower rock river mountain water shadow"
)
_ADJECTIVES = _words(
    "red blue green yellow black white brown small large tall short old new wooden metal round "
    "square left right top bottom front back middle nearest farthest bright dark empty open closed"
)
_VERBS = _words(
    "holding sitting standing lying running walking carrying wearing looking using eating "
    "riding pointing leaning hanging covering touching facing"
)
_PREPOSITIONS = _words("on under near behind beside above below inside between against across")


def _sentences(rng: random.Random, count: int) -> list[str]:
    """Simple random scene descriptions over a few hundred common words."""
    out = []
    for _ in range(count):
        a, b = rng.choice(_NOUNS), rng.choice(_NOUNS)
        adj, verb, prep = rng.choice(_ADJECTIVES), rng.choice(_VERBS), rng.choice(_PREPOSITIONS)
        out.append(
            f"The {adj} {a} is {verb} {prep} the {b}, so it is the object that matches."
            if rng.random() < 0.5
            else f"There is a {adj} {a} {prep} the {b}; the person {verb} it is in the image."
        )
    return out


def _corpus(seed: int, extra: Sequence[str] = ()) -> list[str]:
    """A small deterministic English corpus with the Seg-Zero prompt, thinking and answers,
    then the ``extra`` lines."""
    rng = random.Random(seed)
    lines = [_PROSE, MULTI_OBJECT.example_answer]
    for query in _QUERIES:
        lines.append(MULTI_OBJECT.build_prompt(query))
        objs = []
        for _ in range(rng.randint(1, 3)):
            x1, y1 = rng.randint(0, 600), rng.randint(0, 600)
            x2, y2 = x1 + rng.randint(20, 239), y1 + rng.randint(20, 239)
            px, py = (x1 + x2) // 2, (y1 + y2) // 2
            objs.append(f'{{"bbox_2d": [{x1},{y1},{x2},{y2}], "point_2d": [{px},{py}]}}')
        lines.append(
            f"<think> The question asks for {query.lower()}. I look at the image and compare "
            f"the objects. </think><answer>[{', '.join(objs)}]</answer>"
        )
    lines.extend(_sentences(rng, 400))
    lines.extend(extra)
    return lines * 3


def _bpe_vocab_and_merges(
    seed: int, extra: Sequence[str] = (), vocab_size: int = BPE_VOCAB_SIZE
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE with Qwen2's pre-tokenizer on the built-in corpus."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(seed, extra), trainer=trainer)
    state: dict[str, Any] = json.loads(tok.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    merges: list[tuple[str, str]] = []
    for merge in state["model"]["merges"]:  # ["a", "b"] pairs, or "a b" in older versions
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        merges.append((left, right))
    return vocab, merges


def _build_tokenizer(
    seed: int,
    special_tokens: tuple[tuple[str, bool], ...] = SPECIAL_TOKENS,
    extra: Sequence[str] = (),
    vocab_size: int = BPE_VOCAB_SIZE,
) -> Any:
    """A ``Qwen2Tokenizer`` over the trained BPE (``vocab_size`` tokens, trained on the built-in
    corpus plus ``extra`` texts) with ``special_tokens`` (``(text, special)``, default:
    Qwen2.5-VL's) appended in order."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _bpe_vocab_and_merges(seed, extra, vocab_size)
    n_bpe = len(vocab)
    # Give the special tokens their ids up front: the tokenizer registers eos/pad first.
    vocab = {**vocab, **{t: n_bpe + i for i, (t, _) in enumerate(special_tokens)}}
    options: dict[str, Any] = {"merges": merges, "unk_token": None}  # pairs; no unk (byte-level)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        **options,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    for text, special in special_tokens:
        tokenizer.add_tokens(
            [AddedToken(text, special=special, normalized=False)], special_tokens=special
        )
    ids = [tokenizer.convert_tokens_to_ids(t) for t, _ in special_tokens]
    expected = list(range(n_bpe, n_bpe + len(special_tokens)))
    if ids != expected:
        raise RuntimeError(
            f"special token ids {ids} are not contiguous after the BPE vocab {expected}"
        )
    return tokenizer


def _config(tokenizer: Any, tie_word_embeddings: bool, sizes: QwenSizes = TINY) -> Any:
    from transformers import Qwen2_5_VLConfig

    n_tokens = len(tokenizer)
    vocab_size = -(-n_tokens // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    tid = tokenizer.convert_tokens_to_ids
    head_dim = sizes.text_hidden // sizes.text_heads
    if sum(sizes.mrope_section) * 2 != head_dim:
        raise RuntimeError(
            f"mrope_section {sizes.mrope_section} must sum to head_dim/2 = {head_dim // 2}"
        )
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": sizes.text_hidden,
        "intermediate_size": sizes.text_intermediate,
        "num_hidden_layers": sizes.text_layers,
        "num_attention_heads": sizes.text_heads,
        "num_key_value_heads": sizes.text_kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": sizes.text_layers,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": float(sizes.rope_theta),
            "mrope_section": list(sizes.mrope_section),
        },
        "bos_token_id": tid("<|endoftext|>"),
        "eos_token_id": tid("<|im_end|>"),
        "pad_token_id": tid("<|endoftext|>"),
        "tie_word_embeddings": tie_word_embeddings,
    }
    vision_config = {
        "depth": sizes.vision_depth,
        "hidden_size": sizes.vision_hidden,
        "hidden_act": "silu",
        "intermediate_size": sizes.vision_intermediate,
        "num_heads": sizes.vision_heads,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 112,
        "out_hidden_size": sizes.text_hidden,
        "fullatt_block_indexes": list(sizes.vision_fullatt),
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=tie_word_embeddings,
    )


def _init_weights(model: Any, seed: int) -> None:
    """Deterministic weights with enough spread that logits are far from uniform.

    Norm weights ~ 1 + N(0, 0.1) and biases ~ N(0, 0.1) (not 1 / 0) so a converter that drops
    or misplaces them is caught by parity tests.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if param.ndim == 1 and "norm" in name:
                value = 1.0 + 0.1 * noise
            elif param.ndim == 1:
                value = 0.1 * noise
            elif "embed_tokens" in name or "lm_head" in name:
                value = 0.15 * noise
            else:
                fan_in = param[0].numel()
                value = noise / fan_in**0.5
            param.copy_(value.to(param.dtype))


def _processor(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    common = {
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, **common)
    video_processor = Qwen2VLVideoProcessor(**common)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def build_tiny_qwen25vl(
    out_dir: Path,
    seed: int = 0,
    *,
    tie_word_embeddings: bool = True,
    sizes: QwenSizes = TINY,
    extra_corpus: Sequence[str] = (),
    trainable_init: bool = False,
) -> Path:
    """Write a tiny random Qwen2.5-VL Hugging Face folder to ``out_dir`` and return it.

    ``out_dir`` must not exist yet (it is written to a temp dir next to it, then renamed).
    Weights are stored in bfloat16 like the released checkpoints. ``tie_word_embeddings=True``
    matches Qwen2.5-VL-3B (no ``lm_head`` tensor); False matches the 7B layout.

    For a model meant to be trained: ``sizes`` (:class:`QwenSizes`), ``extra_corpus`` (lines
    added to the BPE training corpus, e.g. the task's queries and answers, so that its words are
    whole tokens) and ``trainable_init`` (keep the transformers initialisation, normal with
    ``initializer_range`` 0.02, instead of the wide spread that parity tests need; stored in
    float32). The defaults build the tiny test model, unchanged.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"output folder already exists: {out_dir}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(seed, extra=extra_corpus, vocab_size=sizes.bpe_vocab)
    config = _config(tokenizer, tie_word_embeddings, sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    dtype = torch.float32 if trainable_init else torch.bfloat16
    if not trainable_init:
        _init_weights(model, seed)
    torch.nn.Module.to(model, dtype).eval()
    model.config.dtype = dtype

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor = _processor(tokenizer)
        processor.save_pretrained(tmp)
        # Hub checkpoints also carry preprocessor_config.json (read by GGUF converters).
        processor.image_processor.save_pretrained(tmp)
        plain_modes(tmp)  # mkdtemp made it 0700
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
