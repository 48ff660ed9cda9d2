"""Qwen2 byte-level BPE tokenizer (Hugging Face ``tokenizer.json``) -> GGUF tokenizer metadata."""

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
    """Everything the ``tokenizer.*`` GGUF keys need."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    pad_id: int
    chat_template: str | None


def _looks_like_control(text: str) -> bool:
    return text.startswith("<|") and text.endswith("|>")


def _token_id(name: str, value: Any, ids: dict[str, int]) -> int | None:
    if isinstance(value, dict):  # {"content": "<|im_end|>", ...} in older tokenizer_config files
        value = value.get("content")
    if value is None:
        return None
    if value not in ids:
        raise ValueError(f"tokenizer_config.json: {name} {value!r} is not in the vocabulary")
    return ids[value]


def _first_id(value: Any) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _chat_template(model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    if isinstance(template, str):
        return template
    as_json = model_dir / "chat_template.json"
    if as_json.is_file():
        value = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(value, str):
            return value
    return None


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


def read_qwen2_vocab(model_dir: Path, vocab_size: int, text_config: dict[str, Any]) -> GGUFVocab:
    """Read tokenizer.json / tokenizer_config.json of a Qwen2(-VL) checkpoint.

    Ids beyond the tokenizer up to the model's ``vocab_size`` become ``[PAD<id>]`` tokens of
    type UNUSED (Qwen pads its embedding matrix). Special added tokens and ``<|...|>`` tokens
    are CONTROL, other added tokens USER_DEFINED, the rest NORMAL.
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

    tokens: list[str] = []
    types: list[int] = []
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

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config: dict[str, Any] = (
        json.loads(tok_config_path.read_text(encoding="utf-8")) if tok_config_path.is_file() else {}
    )
    eos = _token_id("eos_token", tok_config.get("eos_token"), ids)
    if eos is None:
        eos = _first_id(text_config.get("eos_token_id"))
    bos = _token_id("bos_token", tok_config.get("bos_token"), ids)
    if bos is None:
        bos = _first_id(text_config.get("bos_token_id"))
    pad = _token_id("pad_token", tok_config.get("pad_token"), ids)
    if pad is None:
        pad = _first_id(text_config.get("pad_token_id"))
    fallback = ids.get("<|endoftext|>")
    if eos is None:
        eos = ids.get("<|im_end|>", fallback)
    bos = fallback if bos is None else bos
    pad = fallback if pad is None else pad
    if bos is None or eos is None or pad is None:
        raise ValueError(f"{model_dir}: cannot determine bos/eos/pad token ids")
    return GGUFVocab(tokens, types, merges, bos, eos, pad, _chat_template(model_dir, tok_config))


def add_vocab(writer: gguf.GGUFWriter, vocab: GGUFVocab) -> None:
    """Write the ``tokenizer.ggml.*`` keys (gpt2 model, qwen2 pre-tokenizer) and chat template."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(False)
    if vocab.chat_template is not None:
        writer.add_chat_template(vocab.chat_template)
