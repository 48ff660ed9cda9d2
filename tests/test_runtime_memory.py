"""The export's memory budget check, on the real Qwen2.5-VL 3B / 7B shapes (meta device)."""

from __future__ import annotations

import pytest

from segzero_export.targets import get_target


def qwen25vl_config(size: str) -> dict:
    """The published Qwen2.5-VL-3B/7B-Instruct shapes."""
    text = {
        "3b": dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
        ),
        "7b": dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            tie_word_embeddings=False,
        ),
    }[size]
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=text["hidden_size"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
    )
    rope = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "text_config": {
            **text,
            "rope_scaling": rope,
            "rope_parameters": rope,
            "rms_norm_eps": 1e-6,
            "model_type": "qwen2_5_vl_text",
        },
        "vision_config": vision,
        "tie_word_embeddings": text["tie_word_embeddings"],
    }


@pytest.fixture(scope="module")
def counts() -> dict[str, tuple[int, int]]:
    from segzero_export.memory import config_param_counts

    return {s: config_param_counts(qwen25vl_config(s)) for s in ("3b", "7b")}


def test_parameter_counts_match_published_sizes(counts: dict[str, tuple[int, int]]) -> None:
    (t3, v3), (t7, v7) = counts["3b"], counts["7b"]
    print(
        f"3B: text {t3 / 1e9:.3f}B vision {v3 / 1e9:.3f}B; "
        f"7B: text {t7 / 1e9:.3f}B vision {v7 / 1e9:.3f}B"
    )
    assert 3.0e9 < t3 + v3 < 4.0e9  # Qwen2.5-VL-3B: 3.75B
    assert 8.0e9 < t7 + v7 < 8.6e9  # Qwen2.5-VL-7B: 8.29B
    assert 0.6e9 < v7 < 0.7e9


@pytest.mark.parametrize(
    ("size", "target", "sam2", "fits"),
    [
        ("3b", "orin-nano-8gb", "sam2.1_hiera_tiny", True),
        ("7b", "orin-nano-8gb", "sam2.1_hiera_tiny", False),
        ("7b", "orin-nx-16gb", "sam2.1_hiera_base_plus", True),
        ("7b", "agx-orin-64gb", "sam2.1_hiera_large", True),
    ],
)
def test_budget_matches_the_design_table(
    counts: dict[str, tuple[int, int]], size: str, target: str, sam2: str, fits: bool
) -> None:
    from segzero_export.memory import estimate_from_config

    est = estimate_from_config(
        get_target(target), qwen25vl_config(size), "Q4_K_M", sam2, 4096, counts=counts[size]
    )
    print(f"{size} + {sam2} on {target}: {est.explain()}")
    assert est.fits is fits, est.explain()


def test_refusal_message_has_the_numbers(counts: dict[str, tuple[int, int]]) -> None:
    from segzero_export.bundle import BundleTooLarge
    from segzero_export.memory import estimate_from_config

    est = estimate_from_config(
        get_target("orin-nano-8gb"),
        qwen25vl_config("7b"),
        "Q4_K_M",
        "sam2.1_hiera_large",
        4096,
        counts=counts["7b"],
    )
    msg = str(BundleTooLarge(est))
    assert "orin-nano-8gb" in msg and "5.20 GB budget" in msg and f"{est.total:.2f} GB" in msg
