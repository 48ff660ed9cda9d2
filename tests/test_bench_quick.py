"""``segzero-edge bench`` end to end on the tiny models: both sides, JSON schema, PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segzero_bench.workload import STAGES
from segzero_edge.cli import main


def test_bench_tiny_both_sides(
    bench_tiny_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--quick", "--iters", "1", "--warmup", "0", "--decode-tokens", "4"]
    rc = main([*argv, "--cache", str(bench_tiny_cache), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)
    assert rc == 0, out
    assert "ref/runtime" in out and "orin-nano-8gb" in out and "bandwidth ceiling" in out
    files = list(tmp_path.glob("bench-*.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text())
    assert doc["schema_version"] == 1
    assert doc["config"]["threads"] == 1  # --quick: one thread per backend on both sides
    assert files[0].name.startswith(f"bench-{doc['device_fingerprint']}-tiny-")
    assert doc["bandwidth"]["gbs"] > 0
    (case,) = doc["cases"]
    for side in ("runtime", "reference"):
        res = case[side]
        assert set(STAGES) <= set(res["stats"]), res["stats"].keys()
        assert res["stats"]["total"]["n"] == 1
        assert res["decode_steps"] == 4
        assert res["peak_rss_mib"] > 50
        # stages are parts of the end-to-end time
        parts = sum(res["stats"][s]["p50"] for s in STAGES if s != "total")
        assert parts <= res["stats"]["total"]["p50"] * 1.01
    # both sides see the same prompt: llama.cpp and the HF processor count it alike
    assert abs(case["runtime"]["prompt_tokens"] - case["reference"]["prompt_tokens"]) <= 2, case
    assert set(STAGES) <= set(case["ratios"])
    assert all(v > 0 for v in case["ratios"].values())
    assert 0 < case["this_machine"]["decode_fraction_of_bandwidth"] < 1
    assert set(case["roofline"]) >= {"orin-nano-8gb", "agx-orin-64gb", "workload"}
    png = files[0].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_shapes_config(tiny_qwen_dir: Path) -> None:
    """``--shapes real`` builds Qwen2.5-VL-3B sizes: checked on the meta device (no weights)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from segzero_bench.artifacts import real_qwen_config
    from segzero_bench.roofline import QWEN25VL_3B, ReasonerShape

    cfg = real_qwen_config(json.loads((tiny_qwen_dir / "config.json").read_text()))
    assert ReasonerShape.from_hf_config(cfg, name=QWEN25VL_3B.name) == QWEN25VL_3B
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_dict(cfg))
    n = sum(p.numel() for p in model.parameters())
    print(f"real-shape Qwen2.5-VL: {n / 1e9:.3f} B parameters")
    assert 3.7e9 < n < 3.8e9, n  # Qwen2.5-VL-3B-Instruct has 3.75 B


def test_a_crashing_bench_worker_is_named(
    bench_tiny_cache: Path, tmp_path: Path, crashing_library: Path
) -> None:
    """A native crash in a benchmark worker (here the kernels library segfaults when the
    runtime side first preprocesses) fails the run naming the side and the signal."""
    env = {**os.environ, "SEGZERO_NATIVE_LIB": str(crashing_library)}
    argv = ["bench", "--quick", "--side", "runtime", "--iters", "1", "--warmup", "0",
            "--decode-tokens", "4", "--no-plot", "--cache", str(bench_tiny_cache),
            "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_edge.cli", *argv],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    print(proc.stderr[-600:])
    assert proc.returncode == 2, proc.stderr  # the parent lives and reports, in one line
    assert "the runtime benchmark worker failed (killed by SIGSEGV (signal 11)" in proc.stderr
    assert "a native crash in the worker" in proc.stderr
