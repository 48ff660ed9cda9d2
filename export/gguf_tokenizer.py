"""Qwen2 byte-level BPE tokenizer (Hugging Face ``tokenizer.json``) -> GGUF tokenizer metadata.

Follows llama.cpp's ``convert_hf_to_gguf.py`` (``TextModel._set_vocab_gpt2``): the token list
and token types are built as its ``get_vocab_base`` builds them, and merges, special token ids,
``add_*_token`` flags and the chat template come from gguf-py's ``gguf.SpecialVocab``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Qwen2's split regex; llama.cpp implements it as pre-tokenizer type ``qwen2``."""


@dataclass(frozen=True)
class GGUFVocab:
    """Everything the ``tokenizer.*`` GGUF keys need.

    ``tokens`` / ``token_types``: one entry per model token id (``vocab_size`` of them);
    ``special``: merges, special token ids, ``add_*_token`` flags and the chat template.
    """

    tokens: list[str]
    token_types: list[gguf.TokenType]
    special: gguf.SpecialVocab


def _looks_like_control(text: str) -> bool:
    """llama.cpp's ``does_token_look_special`` for the Qwen2 vocabulary: ``<|...|>``."""
    return text.startswith("<|") and text.endswith("|>")


def _pretokenizer_patterns(node: Any) -> list[str]:
    """All Split regex patterns anywhere in a tokenizer.json pre_tokenizer tree."""
    if isinstance(node, dict):
        found = []
        pattern = node.get("pattern")
        if node.get("type") == "Split" and isinstance(pattern, dict) and "Regex" in pattern:
            found.append(pattern["Regex"])
        for child in node.get("pretokenizers") or []:
            found.extend(_pretokenizer_patterns(child))
        return found
    return []


def read_qwen2_vocab(model_dir: Path, vocab_size: int) -> GGUFVocab:
    """Read the tokenizer of a Qwen2(-VL) checkpoint folder for a model of ``vocab_size`` ids.

    Ids beyond the tokenizer up to ``vocab_size`` become ``[PAD<id>]`` tokens of type UNUSED
    (Qwen pads its embedding matrix). Special added tokens and ``<|...|>`` tokens are CONTROL,
    other added tokens USER_DEFINED, the rest NORMAL. ``gguf.SpecialVocab`` reads the merges,
    the special token ids (``tokenizer_config.json``, then ``config.json``) and the chat
    template. Raises ``FileNotFoundError`` without ``tokenizer.json`` and ``ValueError`` for
    a tokenizer llama.cpp would not reproduce (not byte-level BPE, not Qwen2's pre-tokenizer,
    ids beyond ``vocab_size``, no merges, no end-of-sequence token).
    """
    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no tokenizer.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: expected a byte-level BPE tokenizer, got {model.get('type')!r}")
    patterns = _pretokenizer_patterns(data.get("pre_tokenizer"))
    if QWEN2_PRETOKENIZE_REGEX not in patterns:
        raise ValueError(
            f"{path}: pre-tokenizer is not Qwen2's (split patterns {patterns}); "
            "llama.cpp would tokenize differently"
        )

    ids: dict[str, int] = dict(model["vocab"])
    added: dict[int, dict[str, Any]] = {int(t["id"]): t for t in data.get("added_tokens", [])}
    for token_id, info in added.items():
        ids[info["content"]] = token_id
    by_id: dict[int, str] = {i: t for t, i in ids.items()}
    if len(by_id) != len(ids):
        raise ValueError(f"{path}: two tokens share an id")
    top = max(by_id)
    if top >= vocab_size:
        raise ValueError(
            f"{path}: token id {top} ({by_id[top]!r}) does not fit the model's vocab_size "
            f"{vocab_size}"
        )

    # gguf.BpeVocab would mark every added token CONTROL and not pad to vocab_size; llama.cpp's
    # converter (get_vocab_base) does both as below, and its files are the reference here.
    tokens: list[str] = []
    types: list[gguf.TokenType] = []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(text)
            control = added[i].get("special", False) or _looks_like_control(text)
            types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)

    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise ValueError(f"{path}: the BPE tokenizer has no merges")
    if "eos" not in special.special_token_ids:
        raise ValueError(
            f"{model_dir}: no end-of-sequence token (eos_token in tokenizer_config.json or "
            "eos_token_id in config.json)"
        )
    # Qwen2 prepends no BOS (llama.cpp's qwen2 default too); say so in the file unless the
    # tokenizer config sets it.
    special.add_special_token.setdefault("bos", False)
    return GGUFVocab(tokens, types, special)


def add_vocab(writer: gguf.GGUFWriter, vocab: GGUFVocab) -> None:
    """Write the ``tokenizer.ggml.*`` keys (gpt2 model, qwen2 pre-tokenizer) and chat template."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    vocab.special.add_to_gguf(writer, quiet=True)
