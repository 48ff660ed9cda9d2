"""The export's memory budget check, on the real Qwen2.5-VL 3B / 7B and Qwen3-VL 2B / 4B / 8B
shapes (meta device)."""

from __future__ import annotations

import pytest

from segzero_export.model_shapes import published_config
from segzero_export.targets import get_target


def qwen25vl_config(size: str) -> dict:
    """The published Qwen2.5-VL-3B/7B-Instruct shapes (``segzero_export.model_shapes``)."""
    return published_config(f"qwen25vl-{size}")


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


@pytest.mark.parametrize(
    ("size", "n_ctx", "target", "sam2", "fits"),
    [
        ("2b", 4096, "orin-nano-8gb", "sam2.1_hiera_tiny", True),
        ("4b", 2048, "orin-nano-8gb", "sam2.1_hiera_tiny", True),
        ("4b", 4096, "orin-nano-8gb", "sam2.1_hiera_tiny", False),
        ("8b", 4096, "orin-nano-8gb", "sam2.1_hiera_tiny", False),
        ("8b", 4096, "orin-nx-16gb", "sam2.1_hiera_base_plus", True),
        ("8b", 4096, "agx-orin-64gb", "sam2.1_hiera_large", True),
    ],
)
def test_qwen3vl_sizes_in_the_budget(
    size: str, n_ctx: int, target: str, sam2: str, fits: bool
) -> None:
    """Qwen3-VL-2B fits the Orin Nano beside SAM2-tiny with a 4096-token context; 4B with 2048
    (806 prompt tokens + a 1024-token answer), not 4096; 8B needs the NX."""
    from segzero_export.memory import estimate_from_config, kv_cache_gb

    config = published_config(f"qwen3vl-{size}")
    est = estimate_from_config(get_target(target), config, "Q4_K_M", sam2, n_ctx)
    print(f"Qwen3-VL-{size.upper()} n_ctx {n_ctx} + {sam2} on {target}: {est.explain()}")
    assert est.fits is fits, est.explain()
    # f16 K and V: n_ctx x layers x 2 x 8 KV heads x head_dim 128 x 2 bytes
    layers = config["text_config"]["num_hidden_layers"]
    assert kv_cache_gb(config, n_ctx) == n_ctx * layers * 2 * 8 * 128 * 2 / 1e9
