"""``segzero-edge bench`` end to end on the tiny models: three sides, workloads, JSON, PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segzero_bench.workload import STAGES, WORKLOADS
from segzero_edge.cli import main

QUICK = ["bench", "--quick", "--iters", "1", "--warmup", "0", "--decode-tokens", "4"]


def _run(cache: Path, out: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    rc = main([*QUICK, *argv, "--cache", str(cache), "--out", str(out)])
    text = capsys.readouterr().out
    with capsys.disabled():
        print(text)
    assert rc == 0, text
    (path,) = list(out.glob("bench-*.json"))
    return text, path, json.loads(path.read_text())


def test_bench_tiny_three_sides(
    bench_tiny_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, path, doc = _run(
        bench_tiny_cache, tmp_path, capsys, "--side", "all", "--workload", "single",
        "--no-overlap-check",
    )  # fmt: skip
    assert "ref/rt" in out and "stock/rt" in out and "orin-nano-8gb" in out
    assert "bandwidth ceiling" in out and "export estimate" in out
    assert doc["schema_version"] == 2
    assert doc["config"]["threads"] == 1  # --quick: one thread per backend on every side
    assert path.name.startswith(f"bench-{doc['device_fingerprint']}-tiny-")
    assert doc["bandwidth"]["gbs"] > 0
    (case,) = doc["cases"]
    assert case["runtime"]["timed"] == "SegZeroEdge.segment"
    for side in ("runtime", "reference", "stock"):
        res = case[side]
        stats = res["workloads"]["single"]["stats"]
        assert set(STAGES) <= set(stats), stats.keys()
        assert stats["total"]["n"] == 1
        assert res["decode_steps"] == 4
        assert res["peak_rss_mib"] > 50
        # stages are parts of the end-to-end time (the runtime runs sequentially on the CPU)
        parts = sum(stats[s]["p50"] for s in STAGES if s != "total")
        assert parts <= stats["total"]["p50"] * 1.01, (side, stats)
        assert 0 < case["this_machine"]["decode_fraction_of_bandwidth"][side] < 2
    # every side sees the same prompt: llama.cpp and the HF processor count it alike
    tokens = {s: case[s]["prompt_tokens"] for s in ("runtime", "reference", "stock")}
    assert max(tokens.values()) - min(tokens.values()) <= 2, tokens
    assert case["runtime"]["backends"]["overlap"] is False  # both backends on the CPU
    for peer in ("reference", "stock"):
        rat = case["ratios"][peer]["single"]
        assert set(STAGES) <= set(rat) and all(v > 0 for v in rat.values()), rat
    mem = case["memory"]
    assert mem["estimate_gb"] > 0 and mem["measured_gb"] > 0 and mem["target"] == "cpu"
    assert set(case["roofline"]) >= {"orin-nano-8gb", "agx-orin-64gb", "workload"}
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_runtime_workloads_and_overlap(
    bench_tiny_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runtime alone on every workload (--quick's default side), then again overlapped:
    which mode wins."""
    argv = ("--threads", "2", "--no-plot", "--overlap-check")
    _, _, doc = _run(bench_tiny_cache, tmp_path, capsys, *argv)
    assert doc["config"]["sides"] == ["runtime"]
    (case,) = doc["cases"]
    assert "reference" not in case and "stock" not in case
    wl = case["runtime"]["workloads"]
    assert set(wl) == set(WORKLOADS)
    multi = wl["multi-query"]
    assert multi["calls"] == 3 and multi["stats"]["total"]["n"] == 3
    # the frame is encoded once: the second and third queries hit the frame cache
    assert multi["stats"]["sam_encode"]["n"] == 1
    assert multi["frame"]["p50"] == pytest.approx(multi["stats"]["total"]["mean"] * 3, rel=1e-6)
    # the answer's objects reach SAM2: three in multi-object, one elsewhere
    assert wl["multi-object"]["stats"]["objects"]["min"] == 3
    assert wl["single"]["stats"]["objects"]["max"] == 1
    ov = case["overlap"]
    assert set(ov["runs"]) == {"overlapped"} and ov["thread_budget"] == 2
    assert ov["runs"]["overlapped"]["backends"]["overlap"] is True
    assert ov["threads_overlapped"] == {"reasoner": 1, "segmenter": 1}  # split_threads(2)
    assert ov["threads_sequential"] == {"reasoner": 2, "segmenter": 2}
    assert ov["winner"] in ("overlapped", "sequential") and ov["gain"] >= 1
    assert ov["default"] is False


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
