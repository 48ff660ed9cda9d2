"""The tokenizer stored in the GGUF tokenizes exactly like the Hugging Face one."""

from __future__ import annotations

from pathlib import Path

import pytest

from segzero_edge.families import build_prompt

TEXTS = [
    build_prompt("The woman holding an umbrella?", "multi-object"),
    '<think> two cars; the red one is left. </think><answer>[{"bbox_2d": [10,100,200,210], '
    '"point_2d": [30,110]}]</answer>',
    "I'm sure they'LL say DON'T -- 3.14159 and 1,000,000 items!!",
    "spaces   and\ttabs\n\n  new lines\r\n end ",
    "Café naïve — 東京 😀 ümlaut Ελλάδα",
]


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_qwen_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen_dir)


@pytest.fixture(scope="module")
def gguf_vocab(tiny_text_ggufs: dict[str, Path]):  # type: ignore[no-untyped-def]
    import llama_cpp

    from segzero_edge.reasoner.llama_log import capture_log
    from segzero_edge.reasoner.llama_system import ensure_cpu_backend

    ensure_cpu_backend()
    with capture_log() as log:
        llm = llama_cpp.Llama(str(tiny_text_ggufs["Q4_K_M"]), vocab_only=True, verbose=False)
    # vocab_only skips the hyper-parameters, hence n_ctx_train = 0 and that one warning
    problems = [
        t.strip() for level, t in log if level in ("warn", "error") and "n_ctx_train (0)" not in t
    ]
    assert not problems, problems
    yield llm
    llm.close()


@pytest.mark.parametrize("index", range(len(TEXTS)))
def test_gguf_tokenizer_matches_hf(hf_tokenizer, gguf_vocab, index: int) -> None:  # type: ignore[no-untyped-def]
    text = TEXTS[index]
    want = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    got = gguf_vocab.tokenize(text.encode(), add_bos=False, special=False)
    print(f"text {index}: {len(want)} HF tokens, {len(got)} llama.cpp tokens")
    assert got == want
    assert gguf_vocab.detokenize(got).decode() == text


def test_chat_prompt_with_special_tokens_matches(hf_tokenizer, gguf_vocab) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": build_prompt("the red car", "multi-object")},
            ],
        }
    ]
    text = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    want = hf_tokenizer(text)["input_ids"]
    got = gguf_vocab.tokenize(text.encode(), add_bos=False, special=True)
    print(f"chat prompt: {len(want)} tokens, equal={got == want}")
    assert got == want
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>"):
        assert hf_tokenizer.convert_tokens_to_ids(token) in got


def test_special_token_ids_and_padding(hf_tokenizer, gguf_vocab, tiny_text_ggufs) -> None:  # type: ignore[no-untyped-def]
    import gguf

    reader = gguf.GGUFReader(tiny_text_ggufs["F16"])

    def scalar(key: str) -> object:
        return reader.fields[key].contents()

    ids = hf_tokenizer.convert_tokens_to_ids
    assert scalar("tokenizer.ggml.eos_token_id") == ids("<|im_end|>") == gguf_vocab.token_eos()
    assert scalar("tokenizer.ggml.bos_token_id") == ids("<|endoftext|>")
    assert scalar("tokenizer.ggml.padding_token_id") == ids("<|endoftext|>")
    assert scalar("tokenizer.ggml.add_bos_token") is False
    assert scalar("tokenizer.ggml.model") == "gpt2"
    assert scalar("tokenizer.ggml.pre") == "qwen2"
    assert scalar("tokenizer.chat_template") == hf_tokenizer.chat_template
    tokens = scalar("tokenizer.ggml.tokens")
    types = scalar("tokenizer.ggml.token_type")
    n_vocab = gguf_vocab.n_vocab()
    assert len(tokens) == len(types) == n_vocab
    assert n_vocab > len(hf_tokenizer)  # padded like Qwen's 151665 -> 151936
    assert tokens[-1] == f"[PAD{n_vocab - 1}]"
    assert types[-1] == gguf.TokenType.UNUSED
    assert types[ids("<|im_end|>")] == gguf.TokenType.CONTROL
    assert types[ids("<tool_call>")] == gguf.TokenType.USER_DEFINED
    assert types[ids("<|fim_pad|>")] == gguf.TokenType.CONTROL
    assert types[ids("Ġthe")] == gguf.TokenType.NORMAL
