"""Ratio table, plots and the CLI's no-measuring modes of ``segzero-edge bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segzero_bench.measure import summarize
from segzero_bench.plot import load_runs, plot_compare, plot_run
from segzero_bench.report import ratio_table, ratios
from segzero_bench.workload import STAGES
from segzero_edge.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def side(scale: float, name: str) -> dict[str, Any]:
    """A side's result with stage i taking scale * (i + 1) * 10 ms."""
    stats = {s: summarize([scale * (i + 1) * 0.01] * 3) for i, s in enumerate(STAGES)}
    stats["decode_tokens_per_s"] = summarize([100.0 / scale] * 3)
    return {"side": name, "stats": stats, "peak_rss_mib": 1000 * scale, "gpu_peak_mib": None}


def doc(fp: str) -> dict[str, Any]:
    rt, ref = side(1.0, "runtime"), side(2.0, "reference")
    case = {"name": "tiny", "runtime": rt, "reference": ref, "ratios": ratios(rt, ref)}
    return {
        "schema_version": 1,
        "device_fingerprint": fp,
        "created_at": "2026-01-01T00:00:00+00:00",
        "config": {"shapes": "tiny", "decode_tokens": 16},
        "cases": [case],
    }


def test_ratios_and_table() -> None:
    d = doc("cpu-x86-64")
    rat = d["cases"][0]["ratios"]
    assert all(rat[s] == pytest.approx(2.0) for s in STAGES)
    assert rat["decode_tokens_per_s"] == pytest.approx(2.0)  # runtime / reference
    assert rat["peak_rss"] == pytest.approx(2.0)
    table = ratio_table(d["cases"][0])
    print(table)
    assert "ref/runtime" in table and "decode tokens/s" in table
    assert table.count("2.00x") == len(STAGES) + 2 + 2  # stages, p90/p99, tok/s, RSS


def test_plots_are_written(tmp_path: Path) -> None:
    run_png = plot_run(doc("cpu-x86-64"), tmp_path / "run.png")
    assert run_png.read_bytes()[:8] == PNG_MAGIC and run_png.stat().st_size > 5000
    files = []
    for fp in ("cpu-x86-64", "orin-nano-trt10.3"):
        p = tmp_path / f"{fp}.json"
        p.write_text(json.dumps(doc(fp)))
        files.append(p)
    cmp_png = plot_compare(load_runs(files), tmp_path / "cmp.png")
    assert cmp_png.read_bytes()[:8] == PNG_MAGIC
    assert main(["bench", "--compare", *map(str, files), "--out", str(tmp_path / "c2.png")]) == 0
    assert (tmp_path / "c2.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_rejects_other_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert main(["bench", "--compare", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a segzero-edge bench JSON" in capsys.readouterr().err


def test_roofline_mode_prints_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--roofline"]) == 0
    out = capsys.readouterr().out
    print(out)
    for name in ("orin-nano-8gb", "orin-nx-16gb", "agx-orin-32gb", "agx-orin-64gb"):
        assert out.count(name) == 3
    assert "Qwen2.5-VL-7B" in out and "tok/s" in out
