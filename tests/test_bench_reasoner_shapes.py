"""The published reasoner sizes (Qwen2.5-VL-3B/7B, Qwen3-VL-2B/4B/8B) in the roofline and the
``--shapes real --reasoner-shapes`` benchmark: hand counts, the meta-device counts, the GGUF
reading of a Qwen3-VL pair, the artefact config and the sides a Qwen3-VL shape runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segzero_bench.roofline import (
    QWEN3VL_2B,
    QWEN3VL_4B,
    QWEN3VL_8B,
    REASONER_SHAPES,
    ReasonerShape,
    Workload,
    roofline,
)
from segzero_edge.cli import main
from segzero_export.model_shapes import SHAPE_NAMES, published_config


def test_qwen3vl_2b_counts_by_hand() -> None:
    s = QWEN3VL_2B
    assert (s.layers, s.hidden, s.heads, s.kv_heads, s.head_dim) == (28, 2048, 16, 8, 128)
    # q 2048*16*128, k + v 2 * 2048*8*128, o 16*128*2048, SwiGLU 3*2048*6144
    assert s.layer_params == 4_194_304 + 4_194_304 + 4_194_304 + 37_748_736
    # patch 3*2*16^2*1024, 24 blocks of 4*1024^2 + 2*1024*4096 (GELU MLP), final + 3 deepstack
    # mergers of 4096^2 + 4096*2048, a 2304-row position table
    assert s.vision_params == 1_572_864 + 24 * 12_582_912 + 4 * 25_165_824 + 2304 * 1024
    # 832 px: 52 x 52 = 2704 patches, full attention in every block, 676 merged tokens
    n = 2704
    linear = 2 * n * (1_572_864 + 24 * 12_582_912)
    attn = 4 * n * 1024 * 24 * n
    mergers = 2 * 676 * 4 * 25_165_824
    assert s.vision_flops() == s.vision_flops(832) == linear + attn + mergers
    assert (s.resize_size, s.image_tokens, s.prompt_tokens) == (832, 676, 676 + 130)
    w = Workload(s)
    assert (w.image_size, w.prompt_tokens) == (832, 806)
    assert Workload(s, prompt_tokens=100, image_size=640).image_size == 640


def test_4b_has_an_explicit_head_dim_and_8b_untied_output() -> None:
    # 4B: 32 heads x 128 = 4096 wide attention on a 2560-wide model
    assert QWEN3VL_4B.head_dim * QWEN3VL_4B.heads == 4096 != QWEN3VL_4B.hidden
    assert QWEN3VL_4B.vision_params == QWEN3VL_2B.vision_params - 4 * 4096 * (2048 - 2560)
    assert QWEN3VL_8B.vision_depth == 27 and QWEN3VL_8B.deepstack_mergers == 3


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shapes_match_the_meta_device_model(name: str) -> None:
    """The roofline's matmul counts against transformers' model of the same config.json (the
    difference: norms, biases and, when tied, the output matrix counted once)."""
    from segzero_export.memory import config_param_counts

    shape = REASONER_SHAPES[name]
    config = published_config(name)
    text, vision = config_param_counts(config)
    tied = config["tie_word_embeddings"]
    matmuls = shape.layers * shape.layer_params + shape.output_params * (1 if tied else 2)
    print(f"{name}: text {text:,} vs {matmuls:,}; vision {vision:,} vs {shape.vision_params:,}")
    assert matmuls == pytest.approx(text, rel=2e-3)
    assert shape.vision_params == pytest.approx(vision, rel=2e-3)


def test_qwen3vl_2b_parameters_are_the_published_count() -> None:
    from segzero_export.memory import config_param_counts

    assert sum(config_param_counts(published_config("qwen3vl-2b"))) == 2_127_532_032
    with pytest.raises(ValueError, match="qwen3vl-2b"):
        published_config("qwen3vl-1b")


def test_roofline_of_the_qwen3vl_sizes() -> None:
    nano = {n: roofline(Workload(REASONER_SHAPES[n]))["orin-nano-8gb"] for n in SHAPE_NAMES}
    tps = {n: r["decode_tokens_per_s"] for n, r in nano.items()}
    print({n: round(v, 1) for n, v in tps.items()})
    # decode is bandwidth-bound: fewer weight bytes, faster
    assert tps["qwen3vl-2b"] > tps["qwen25vl-3b"] > tps["qwen3vl-4b"] > tps["qwen25vl-7b"]
    assert tps["qwen3vl-8b"] < tps["qwen25vl-7b"]  # untied 8B reads more than 7B
    # fewer image tokens at 832 (676) than at 840 (900): a cheaper 2B prefill than 3B's
    floors = {n: r["floors_s"] for n, r in nano.items()}
    assert floors["qwen3vl-2b"]["prefill"] < floors["qwen25vl-3b"]["prefill"]
    assert floors["qwen3vl-2b"]["total"] < floors["qwen25vl-3b"]["total"]


def test_shape_from_a_qwen3vl_gguf_pair(
    tiny_qwen3vl_dir: Path, tiny_qwen3vl_text_ggufs: dict[str, Path], tiny_qwen3vl_mmproj: Path
) -> None:
    from segzero_bench.run import shape_from_gguf

    want = ReasonerShape.from_hf_config(json.loads((tiny_qwen3vl_dir / "config.json").read_text()))
    got = shape_from_gguf(tiny_qwen3vl_text_ggufs["Q4_K_M"], tiny_qwen3vl_mmproj, name="model")
    print(got)
    assert got == want
    assert (got.vision_mlp_mats, got.deepstack_mergers, got.vision_positions) == (2, 2, 256)
    assert got.resize_size == 832 and got.vision_full_blocks == got.vision_depth


def test_real_qwen3vl_shapes_config(tiny_qwen3vl_dir: Path) -> None:
    """``--shapes real --reasoner-shapes qwen3vl-2b`` builds Qwen3-VL-2B's sizes with the tiny
    Qwen3-VL's token ids: checked on the meta device (no weights)."""
    from segzero_bench.artifacts import artifacts_root, real_qwen_config, reasoner_family
    from segzero_export.memory import config_param_counts

    tiny = json.loads((tiny_qwen3vl_dir / "config.json").read_text())
    cfg = real_qwen_config(tiny, "qwen3vl-2b")
    assert ReasonerShape.from_hf_config(cfg, name=QWEN3VL_2B.name) == QWEN3VL_2B
    assert cfg["image_token_id"] == tiny["image_token_id"]
    assert cfg["text_config"]["eos_token_id"] == tiny["text_config"]["eos_token_id"]
    text, vision = config_param_counts(cfg)
    # the tiny tokenizer's vocabulary is padded to the published 151936 rows: the same count
    assert text + vision == 2_127_532_032
    with pytest.raises(ValueError, match="architecture"):
        real_qwen_config(tiny, "qwen25vl-3b")
    assert reasoner_family("qwen3vl-4b") == "qwen3vl-grounding"
    assert reasoner_family("qwen25vl-7b") is None
    root = Path("/c")
    assert artifacts_root("real", "qwen25vl-3b", root) == root / "real-seed0"
    assert artifacts_root("real", "qwen3vl-2b", root) == root / "real-qwen3vl-2b-seed0"


def test_qwen3vl_shapes_run_the_runtime_side_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segzero_bench.run import BenchConfig, check_reasoner_shapes_sides

    check_reasoner_shapes_sides(
        BenchConfig(shapes="real", reasoner_shapes="qwen3vl-2b", sides=("runtime",))
    )
    with pytest.raises(ValueError, match=r"only the runtime side.*--side runtime"):
        check_reasoner_shapes_sides(BenchConfig(shapes="real", reasoner_shapes="qwen3vl-4b"))
    with pytest.raises(ValueError, match="needs --shapes real"):
        check_reasoner_shapes_sides(BenchConfig(shapes="tiny", reasoner_shapes="qwen3vl-2b"))
    with pytest.raises(ValueError, match="unknown reasoner shapes"):
        check_reasoner_shapes_sides(BenchConfig(shapes="real", reasoner_shapes="qwen3vl-1b"))
    argv = ["bench", "--shapes", "real", "--reasoner-shapes", "qwen3vl-2b", "--out", str(tmp_path)]
    assert main(argv) == 2  # refused before any model is built
    assert "--side runtime" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(["bench", "--reasoner-shapes", "qwen3vl-1b"])


def test_roofline_mode_takes_reasoner_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--roofline", "--reasoner-shapes", "qwen3vl-4b"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert out.startswith("qwen3vl-4b (Qwen3-VL-4B)") and "832 px frame, 806 prompt" in out
    assert "qwen3vl-2b" not in out and out.count("orin-nano-8gb") == 1


def test_random_weights_are_written_shard_by_shard(tiny_qwen3vl_dir: Path, tmp_path: Path) -> None:
    """The real-shape folders get their weights without the model in memory: the same names
    and shapes ``save_pretrained`` writes, loadable by ``from_pretrained`` with nothing missing."""
    import shutil

    from safetensors import safe_open
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from segzero_bench.artifacts import write_random_weights

    def tensors(folder: Path) -> dict[str, tuple[int, ...]]:
        out = {}
        for f in folder.glob("*.safetensors"):
            with safe_open(str(f), "pt") as st:
                for k in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                    out[k] = tuple(st.get_slice(k).get_shape())
        return out

    out = tmp_path / "random"
    shutil.copytree(tiny_qwen3vl_dir, out, ignore=shutil.ignore_patterns("*.safetensors*"))
    config = Qwen3VLConfig.from_pretrained(out)
    files = write_random_weights(
        config, Qwen3VLForConditionalGeneration, out, seed=1, shard_bytes=1 << 20
    )
    assert len(files) > 1 and (out / "model.safetensors.index.json").is_file()
    assert tensors(out) == tensors(tiny_qwen3vl_dir)
    model, info = Qwen3VLForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    w = model.model.language_model.layers[0].mlp.up_proj.weight.float()
    assert (
        0.015 < float(w.std()) < 0.025 and float(model.model.language_model.norm.weight.min()) == 1
    )
