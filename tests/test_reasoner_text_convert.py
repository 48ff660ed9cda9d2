"""GGUF text-model conversion: metadata, tensors, layouts, outtypes, atomicity, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

EXPECTED_KEYS = {
    "general.architecture": "qwen2vl",
    "qwen2vl.embedding_length": 256,
    "qwen2vl.block_count": 2,
    "qwen2vl.feed_forward_length": 512,
    "qwen2vl.attention.head_count": 4,
    "qwen2vl.attention.head_count_kv": 2,
    "qwen2vl.context_length": 4096,
    "qwen2vl.rope.freq_base": 1000000.0,
    "qwen2vl.rope.dimension_sections": [8, 12, 12, 0],
}
BLOCK_TENSORS = [
    "attn_norm.weight",
    "attn_q.weight",
    "attn_q.bias",
    "attn_k.weight",
    "attn_k.bias",
    "attn_v.weight",
    "attn_v.bias",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
]


def _fields(path: Path) -> dict[str, object]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _tensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    import gguf

    return {t.name: (t.tensor_type.name, np.array(t.data)) for t in gguf.GGUFReader(path).tensors}


def test_f16_gguf_metadata_and_tensors(tiny_text_ggufs: dict[str, Path]) -> None:
    fields = _fields(tiny_text_ggufs["F16"])
    for key, want in EXPECTED_KEYS.items():
        assert fields[key] == want, key
    assert abs(float(fields["qwen2vl.attention.layer_norm_rms_epsilon"]) - 1e-6) < 1e-12
    assert fields["general.file_type"] == 1  # MOSTLY_F16
    tensors = _tensors(tiny_text_ggufs["F16"])
    want = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}" for i in range(2) for n in BLOCK_TENSORS
    }
    assert set(tensors) == want  # tied embeddings: no output.weight; no visual tensors
    for name, (qtype, _) in tensors.items():
        expect = "F32" if name.endswith(("norm.weight", ".bias")) else "F16"
        assert qtype == expect, name
    print(f"F16 GGUF: {len(tensors)} tensors, {len(fields)} keys")


def test_hf_values_survive_conversion(
    tiny_qwen_dir: Path, tiny_text_ggufs: dict[str, Path]
) -> None:
    from safetensors import safe_open

    tensors = _tensors(tiny_text_ggufs["F16"])
    with safe_open(str(tiny_qwen_dir / "model.safetensors"), framework="pt") as f:
        pairs = {
            "token_embd.weight": "model.embed_tokens.weight",
            "blk.1.attn_k.bias": "model.layers.1.self_attn.k_proj.bias",
            "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
            "output_norm.weight": "model.norm.weight",
        }
        for gguf_name, hf_name in pairs.items():
            hf = f.get_tensor(hf_name).float().numpy()
            got = tensors[gguf_name][1].astype(np.float32).reshape(hf.shape)
            # bf16 -> f16 is exact except below f16's normal range (subnormal step 2**-24)
            np.testing.assert_allclose(got, hf, rtol=0, atol=2**-24, err_msg=gguf_name)


def _to_language_model_layout(src: Path, dst: Path) -> None:
    """Rewrite a checkpoint the other way round: flat config (as transformers 4 wrote it) and
    ``model.language_model.* / model.visual.*`` tensor names."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    config = json.loads((src / "config.json").read_text())
    text = config.pop("text_config")
    rope = text.pop("rope_parameters")
    config.update(text)
    config["rope_theta"] = rope["rope_theta"]
    config["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    (dst / "config.json").write_text(json.dumps(config))
    weights = load_file(str(src / "model.safetensors"))
    renamed = {}
    for name, value in weights.items():
        if name.startswith("visual."):
            name = "model." + name
        elif name.startswith("model."):
            name = "model.language_model." + name[len("model.") :]
        renamed[name] = value
    save_file(renamed, str(dst / "model.safetensors"), metadata={"format": "pt"})


def test_both_checkpoint_layouts_give_the_same_gguf(
    tiny_qwen_dir: Path, tiny_text_ggufs: dict[str, Path], tmp_path: Path
) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    other = tmp_path / "tiny_qwen25vl"
    _to_language_model_layout(tiny_qwen_dir, other)
    out = convert_text_model(other, tmp_path / "other.gguf", progress=False)
    assert _fields(out) == _fields(tiny_text_ggufs["F16"])
    a, b = _tensors(out), _tensors(tiny_text_ggufs["F16"])
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][0] == b[name][0]
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)


def test_untied_checkpoint_writes_output_tensor(tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model
    from segzero_export.tiny_qwen import build_tiny_qwen25vl
    from tests.fixtures.reasoner import llama_logits

    src = build_tiny_qwen25vl(tmp_path / "untied", seed=1, tie_word_embeddings=False)
    out = convert_text_model(src, tmp_path / "untied.gguf", outtype="f32", progress=False)
    tensors = _tensors(out)
    assert tensors["output.weight"][0] == "F32"
    assert not np.array_equal(tensors["output.weight"][1], tensors["token_embd.weight"][1])

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    ids = list(range(3, 40))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    got, _ = llama_logits(out, ids)
    diff = float(np.abs(got - ref).max())
    print(f"untied F32 GGUF vs HF: max|diff|={diff:.3g} logit scale={np.abs(ref).max():.3g}")
    assert diff < 2e-3 * float(np.abs(ref).max())


def test_bf16_outtype(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    out = convert_text_model(tiny_qwen_dir, tmp_path / "bf16.gguf", outtype="bf16", progress=False)
    tensors = _tensors(out)
    assert tensors["blk.0.attn_q.weight"][0] == "BF16"
    assert tensors["blk.0.attn_q.bias"][0] == "F32"
    assert _fields(out)["general.file_type"] == 32


def test_missing_layer_is_named(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 3  # the weights only have 2 layers
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lacks tensors \['blk\.2\."):
        convert_text_model(broken, tmp_path / "text.gguf", progress=False)


def test_failure_mid_write_leaves_no_file(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from segzero_export.reasoner_gguf import convert_text_model

    big = tmp_path / "big"
    shutil.copytree(tiny_qwen_dir, big)
    weights = load_file(str(big / "model.safetensors"))
    weights["model.layers.1.mlp.down_proj.weight"][0, 0] = torch.tensor(1e6)  # > f16 max 65504
    save_file(weights, str(big / "model.safetensors"), metadata={"format": "pt"})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ValueError, match=r"down_proj\.weight: values beyond the float16 range"):
        convert_text_model(big, out_dir / "text.gguf", progress=False)
    assert list(out_dir.iterdir()) == []  # neither the target nor the temp file
    out = convert_text_model(big, out_dir / "text.gguf", outtype="bf16", progress=False)
    assert [p.name for p in out_dir.iterdir()] == [out.name]


def test_unknown_outtype(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    with pytest.raises(ValueError, match=r"unknown outtype 'q4'"):
        convert_text_model(tiny_qwen_dir, tmp_path / "x.gguf", outtype="q4")


def test_wrong_architecture_and_missing_config(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    with pytest.raises(FileNotFoundError, match=r"no config.json"):
        convert_text_model(tmp_path, tmp_path / "x.gguf")
    other = tmp_path / "llava"
    shutil.copytree(tiny_qwen_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["LlavaForConditionalGeneration"]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"unsupported architecture .*LlavaForConditionalGeneration"
    ):
        convert_text_model(other, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_shape_mismatch_is_reported(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from segzero_export.reasoner_gguf import convert_text_model

    bad = tmp_path / "bad"
    shutil.copytree(tiny_qwen_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 768
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mlp\.\w+_proj\.weight: shape .* does not match config"):
        convert_text_model(bad, tmp_path / "x.gguf", progress=False)


QWEN25VL_7B_FLAT_CONFIG = {
    # the published Qwen2.5-VL-7B-Instruct config.json (transformers 4 layout), abridged
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": False,
    "vocab_size": 152064,
    "vision_config": {"depth": 32, "hidden_size": 1280, "fullatt_block_indexes": [7, 15, 23, 31]},
}


def test_text_hparams_of_the_real_7b_config() -> None:
    from segzero_export.reasoner_gguf import _expected_shapes, text_hparams

    hp = text_hparams(QWEN25VL_7B_FLAT_CONFIG)
    assert (hp.hidden_size, hp.num_layers, hp.num_heads, hp.num_kv_heads) == (3584, 28, 28, 4)
    assert hp.head_dim == 128 and hp.mrope_section == [16, 24, 24]
    assert hp.rope_theta == 1e6 and hp.context_length == 128000 and not hp.tie_word_embeddings
    shapes = _expected_shapes(hp)
    assert shapes["output.weight"] == (152064, 3584)
    assert shapes["blk.27.attn_k.weight"] == (512, 3584)
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    print(
        f"Qwen2.5-VL-7B language model: {n_params / 1e9:.3f} B parameters in {len(shapes)} tensors"
    )
    assert 7.60e9 < n_params < 7.63e9  # Qwen2.5-7B: 7.61 B


def test_bad_mrope_section_is_reported() -> None:
    from segzero_export.reasoner_gguf import text_hparams

    config = {**QWEN25VL_7B_FLAT_CONFIG, "rope_scaling": {"mrope_section": [16, 24, 16]}}
    with pytest.raises(ValueError, match=r"mrope_section \[16, 24, 16\] sums to 56"):
        text_hparams(config)
    without = {k: v for k, v in QWEN25VL_7B_FLAT_CONFIG.items() if k != "hidden_size"}
    with pytest.raises(ValueError, match=r"lacks the text-model field 'hidden_size'"):
        text_hparams(without)


def test_tensor_names() -> None:
    from segzero_export.reasoner_gguf import gguf_tensor_name, model_name

    assert gguf_tensor_name("model.layers.3.self_attn.q_proj.bias") == "blk.3.attn_q.bias"
    assert gguf_tensor_name("model.language_model.layers.0.mlp.up_proj.weight") == (
        "blk.0.ffn_up.weight"
    )
    assert gguf_tensor_name("lm_head.weight") == "output.weight"
    assert gguf_tensor_name("visual.merger.mlp.0.weight") is None
    assert gguf_tensor_name("model.visual.blocks.0.attn.qkv.weight") is None
    with pytest.raises(ValueError, match=r"unexpected tensor .*o_proj\.bias"):
        gguf_tensor_name("model.layers.0.self_attn.o_proj.bias")
    snapshot = Path("/cache/hub/models--Ricky06662--Seg-Zero-7B/snapshots/0123abc")
    assert model_name(snapshot) == "Seg-Zero-7B"


def test_sharded_checkpoint_gives_the_same_gguf(
    tiny_qwen_dir: Path, tiny_text_ggufs: dict[str, Path], tmp_path: Path
) -> None:
    """Released 3B/7B checkpoints are sharded with a model.safetensors.index.json."""
    from safetensors.torch import load_file, save_file

    from segzero_export.reasoner_gguf import convert_text_model

    sharded = tmp_path / "tiny_qwen25vl"
    shutil.copytree(tiny_qwen_dir, sharded)
    weights = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    names = sorted(weights)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, part in shards.items():
        save_file({n: weights[n] for n in part}, str(sharded / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    out = convert_text_model(sharded, tmp_path / "sharded.gguf", progress=False)
    a, b = _tensors(out), _tensors(tiny_text_ggufs["F16"])
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)
