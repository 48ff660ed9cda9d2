"""Roofline math (segzero_bench.roofline), checked against figures worked out by hand."""

from __future__ import annotations

import json

import pytest

from segzero_bench.roofline import (
    QWEN25VL_3B,
    QWEN25VL_7B,
    ReasonerShape,
    Workload,
    decode_tokens_per_s,
    fraction_of_ceiling,
    roofline,
    sam2_size_key,
    stage_floors,
    target_for_jetson,
)
from segzero_export.targets import TARGETS, Target

TOY = ReasonerShape("toy", 1, 4, 8, 2, 1, 2, 10, 1, 4, 8, 1)


def test_toy_counts_by_hand() -> None:
    # q 4*2*2=16, k+v 2*4*1*2=16, o 16, mlp 3*4*8=96
    assert TOY.layer_params == 144
    assert TOY.output_params == 40
    # 2*3 tokens*144 + causal attention 2*1 layer*(2*2)*3*3 + last-token logits 2*40
    assert TOY.prefill_flops(3) == 864 + 72 + 80
    # Q4_K_M: 144 * 4.85 / 8 + output 40 * 6.5625 / 8
    assert TOY.weight_bytes_per_token("Q4_K_M") == pytest.approx(87.3 + 32.8125)
    # f16 K and V: 5 tokens * 1 layer * 2 * 1 kv head * 2 dims * 2 bytes
    assert TOY.kv_bytes(5) == 40


def test_7b_decode_ceiling_matches_design() -> None:
    """7B Q4_K_M ~4.7 GB file -> <= ~43 tok/s on AGX, ~22 on NX."""
    w = Workload(QWEN25VL_7B, prompt_tokens=1030, decode_tokens=64)
    layers = 28 * (3584 * 3584 * 2 + 2 * 3584 * 512 + 3 * 3584 * 18944)
    weights = layers * 4.85 / 8 + 152064 * 3584 * 6.5625 / 8
    kv = 1062 * 28 * 2 * 4 * 128 * 2
    agx = decode_tokens_per_s(w, 204.8)
    print(f"7B Q4_K_M decode ceiling: AGX {agx:.1f} tok/s, weights {weights / 1e9:.2f} GB")
    assert agx == pytest.approx(204.8e9 / (weights + kv), rel=1e-9)
    assert 43 * 0.9 < agx < 43 * 1.15, agx
    assert 22 * 0.9 < decode_tokens_per_s(w, 102.4) < 22 * 1.15


def test_3b_vision_and_prefill_flops() -> None:
    # 3B text: 36 layers of (2048*2048*2 + 2*2048*256 + 3*2048*11008) weights
    assert QWEN25VL_3B.layers * QWEN25VL_3B.layer_params == 36 * 77_070_336
    # vision: 32 blocks of 4*1280^2 + 3*1280*3420, patch embed 1176*1280, merger
    assert QWEN25VL_3B.vision_params == 1176 * 1280 + 32 * 19_686_400 + 5120 * 5120 + 5120 * 2048
    f = QWEN25VL_3B.vision_flops(840)
    print(f"3B vision encoder at 840 px: {f / 1e12:.2f} TFLOP")
    assert 4.5e12 < f < 5.5e12


def test_floor_is_max_of_compute_and_bandwidth() -> None:
    t = Target("t", "", 8, 5, bandwidth_gbs=100, fp16_tflops=10, compute_capability=None, fits="")
    w = Workload(TOY, sam2_variant="tiny", prompt_tokens=3, decode_tokens=2)
    floors = stage_floors(w, t)
    # SAM2-tiny encoder: 292.4 GFLOP / 10 TFLOPS = 29.24 ms > 27.2M * 2 B / 100 GB/s
    assert floors["sam_encode"] == pytest.approx(292.4e9 / 10e12)
    # toy prefill: weights dominate: 120.1125 B / 100 GB/s > 1016 FLOP / 10 TFLOPS
    assert floors["prefill"] == pytest.approx(120.1125 / 100e9)
    assert floors["total"] == pytest.approx(sum(v for k, v in floors.items() if k != "total"))
    cpu = Target("cpu", "", 8, 5, 0.0, 0.0, None, "")
    assert stage_floors(w, cpu)["total"] is None
    with pytest.raises(ValueError, match="bandwidth"):
        decode_tokens_per_s(w, 0)


def test_fraction_and_json() -> None:
    floors = {"decode": 0.5, "prefill": None, "sam_encode": 0.1}
    frac = fraction_of_ceiling({"decode": 2.0, "prefill": 1.0, "sam_encode": 0.2}, floors)
    assert frac == {"decode": 0.25, "sam_encode": 0.5}
    roof = roofline(Workload(QWEN25VL_3B))
    assert set(TARGETS) <= set(roof)
    json.dumps(roof)  # JSON-ready
    nano, agx = roof["orin-nano-8gb"], roof["agx-orin-64gb"]
    assert agx["decode_tokens_per_s"] > nano["decode_tokens_per_s"]
    assert 0 < agx["floors_s"]["total"] < nano["floors_s"]["total"]


def test_names() -> None:
    assert sam2_size_key("sam2.1_hiera_b+") == "base_plus"
    assert sam2_size_key("sam2.1_hiera_t") == "tiny"
    with pytest.raises(ValueError, match="unknown SAM2 variant"):
        sam2_size_key("resnet")
    assert target_for_jetson("NVIDIA Jetson AGX Orin Developer Kit", 64) == "agx-orin-64gb"
    assert target_for_jetson("NVIDIA Jetson AGX Orin", 32) == "agx-orin-32gb"
    assert target_for_jetson(
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    ) == ("orin-nano-8gb")
    assert target_for_jetson("NVIDIA Jetson Orin NX Engineering Reference Developer Kit") == (
        "orin-nx-16gb"
    )
    assert target_for_jetson(None) is None
    assert target_for_jetson("NVIDIA Jetson Xavier NX") is None


def test_from_hf_config() -> None:
    cfg = {
        "text_config": {
            "num_hidden_layers": 36, "hidden_size": 2048, "intermediate_size": 11008,
            "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
        },
        "vision_config": {
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
            "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112,
        },
    }  # fmt: skip
    shape = ReasonerShape.from_hf_config(cfg, name="Qwen2.5-VL-3B")
    assert shape == QWEN25VL_3B
