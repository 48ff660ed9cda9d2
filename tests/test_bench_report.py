"""Ratio table, plots and the CLI's no-measuring modes of ``segzero-edge bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segzero_bench.measure import summarize
from segzero_bench.plot import load_runs, plot_compare, plot_run, run_figure
from segzero_bench.report import case_ratios, ratio_table, ratios
from segzero_bench.workload import CALLS, STAGES, WORKLOADS
from segzero_edge.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def side(scale: float, name: str) -> dict[str, Any]:
    """A side's result with stage i taking scale * (i + 1) * 10 ms in every workload."""
    stats = {s: summarize([scale * (i + 1) * 0.01] * 3) for i, s in enumerate(STAGES)}
    stats["decode_tokens_per_s"] = summarize([100.0 / scale] * 3)
    workloads = {
        w: {"stats": stats, "frame": summarize([scale * CALLS[w]] * 3), "calls": CALLS[w]}
        for w in WORKLOADS
    }
    return {"side": name, "workloads": workloads, "peak_rss_mib": 1000 * scale}


def doc(fp: str) -> dict[str, Any]:
    rt, ref, stock = side(1.0, "runtime"), side(2.0, "reference"), side(1.5, "stock")
    case = {"name": "tiny", "runtime": rt, "reference": ref, "stock": stock}
    case["ratios"] = case_ratios(case)
    return {
        "schema_version": 2,
        "device_fingerprint": fp,
        "created_at": "2026-01-01T00:00:00+00:00",
        "config": {"shapes": "tiny", "decode_tokens": 16},
        "cases": [case],
    }


def test_ratios_and_table() -> None:
    d = doc("cpu-x86-64")
    rat = d["cases"][0]["ratios"]
    assert set(rat) == {"reference", "stock"} and set(rat["stock"]) == set(WORKLOADS)
    for peer, factor in (("reference", 2.0), ("stock", 1.5)):
        for w in WORKLOADS:
            r = rat[peer][w]
            assert all(r[s] == pytest.approx(factor) for s in STAGES), (peer, w, r)
            assert r["decode_tokens_per_s"] == pytest.approx(factor)  # runtime / peer
            assert r["peak_rss"] == pytest.approx(factor)
            assert r["frame"] == pytest.approx(factor)
    table = ratio_table(d["cases"][0], "multi-query")
    print(table)
    assert "ref/rt" in table and "stock/rt" in table and "frame (3 calls) p50" in table
    # stages + total p90 + frame p50/p90 + decode tok/s, for each peer
    assert table.count("2.00x") == table.count("1.50x") == len(STAGES) + 4
    single = ratio_table(d["cases"][0], "single")
    assert "frame (" not in single


def test_ratios_skip_a_missing_workload() -> None:
    rt, ref = side(1.0, "runtime"), side(2.0, "reference")
    del ref["workloads"]["multi-object"]
    assert ratios(rt, ref, "multi-object") == {}
    assert ratios(rt, ref, "single")["total"] == pytest.approx(2.0)


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


def test_compare_reads_the_old_workload_spellings(tmp_path: Path) -> None:
    """A bench JSON saved with ``multi_query`` / ``multi_object`` keys loads with the current
    names, so a comparison across old and new runs sees the same workloads."""
    old = doc("cpu-x86-64")
    old["config"]["inputs"] = {"workloads": ["single", "multi_query", "multi_object"]}
    for case in old["cases"]:
        for s in ("runtime", "reference", "stock"):
            case[s]["workloads"] = {k.replace("-", "_"): v for k, v in case[s]["workloads"].items()}
        case["ratios"] = {
            p: {k.replace("-", "_"): v for k, v in r.items()} for p, r in case["ratios"].items()
        }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    (loaded,) = load_runs([path])
    case = loaded["cases"][0]
    assert set(WORKLOADS) == {"single", "multi-query", "multi-object"}
    assert set(case["runtime"]["workloads"]) == set(WORKLOADS)
    assert set(case["ratios"]["stock"]) == set(WORKLOADS)
    assert loaded["config"]["inputs"]["workloads"] == list(WORKLOADS)
    assert ratio_table(case, "multi-query").startswith("workload multi-query")


def test_run_plot_titles_do_not_overlap() -> None:
    """With a real case name (long), the run's title and each panel's title keep clear of
    one another once drawn."""
    import itertools

    import matplotlib.pyplot as plt

    d = doc("orin-nano-8gb-jetpack6.2-trt10.3-cuda12.6")
    d["cases"] = [dict(d["cases"][0], name=n) for n in ("qwen2.5-vl-3b-q4_k_m+sam2.1-tiny", "b")]
    fig = run_figure(d)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    titles = [fig._suptitle, *(ax.title for ax in fig.axes)]  # type: ignore[attr-defined]
    boxes = [t.get_window_extent(renderer) for t in titles if t is not None and t.get_text()]
    assert len(boxes) == 5
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    plt.close(fig)


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
        assert out.count(name) == 5  # every reasoner shape
    assert "Qwen2.5-VL-7B" in out and "Qwen3-VL-2B" in out and "tok/s" in out
