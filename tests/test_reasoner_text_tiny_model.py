"""The tiny Qwen2.5-VL fixture loads offline with transformers and has the real layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segzero_edge.families import build_prompt
from segzero_edge.layout import REASONER_SIZE


def test_tiny_qwen_loads_and_processor_gives_900_image_tokens(tiny_qwen_dir: Path) -> None:
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_qwen_dir)
    config = json.loads((tiny_qwen_dir / "config.json").read_text())
    text = config["text_config"]
    assert text["hidden_size"] % 256 == 0
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == (
        text["hidden_size"] // text["num_attention_heads"]
    )
    assert len(processor.tokenizer) <= text["vocab_size"]

    image = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (REASONER_SIZE, REASONER_SIZE, 3), np.uint8)
    )
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": build_prompt("the red car", "multi-object")},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    grid = inputs["image_grid_thw"].tolist()
    n_image = int((inputs["input_ids"] == config["image_token_id"]).sum())
    print(
        f"image_grid_thw={grid} image tokens={n_image} prompt tokens={inputs['input_ids'].shape[1]}"
    )
    assert grid == [[1, 60, 60]]
    assert n_image == 900

    with torch.no_grad():
        out = model(**inputs)
    logits = out.logits[0, -1]
    assert logits.shape == (text["vocab_size"],)
    assert torch.isfinite(logits).all()
    print(f"last-position logit std={float(logits.std()):.3f}")


def test_tiny_qwen_is_deterministic(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    again = build_tiny_qwen25vl(tmp_path / "again", seed=0)
    assert (again / "tokenizer.json").read_bytes() == (
        tiny_qwen_dir / "tokenizer.json"
    ).read_bytes()
    weights = (tiny_qwen_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights


def test_tiny_qwen_refuses_existing_folder(tmp_path: Path) -> None:
    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    with pytest.raises(FileExistsError, match="already exists"):
        build_tiny_qwen25vl(tmp_path, seed=0)
