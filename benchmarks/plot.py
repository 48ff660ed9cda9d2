"""Matplotlib PNGs: one run (every side per stage and workload) and a comparison across runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segzero_edge.fileio import atomic_path

from .report import PEERS, workload_frame, workload_stats
from .workload import STAGES, WORKLOAD_TITLES, WORKLOADS

SIDES = ("runtime", *PEERS)

PLOT_STAGES = [s for s in STAGES if s != "total"]

OLD_WORKLOAD_SPELLINGS = {"multi_query": "multi-query", "multi_object": "multi-object"}
"""Workload names in bench JSON files written before the workloads were spelled like the model
families and CLI flags: :func:`load_runs` reads them as the new names."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return out


def plot_run(doc: dict[str, Any], out: Path) -> Path:
    """Per case: p50 ms per stage and side (one query per new frame, log scale), and the
    end-to-end p50 per workload and side (the frame's three calls summed for multi-query)."""
    plt = _pyplot()
    fig = run_figure(doc)
    out = _save(fig, Path(out))
    plt.close(fig)
    return out


def run_figure(doc: dict[str, Any]) -> Any:
    """The figure of :func:`plot_run`. Titles: the run on top (two lines), each panel's case
    and what it shows on two short lines, laid out by matplotlib's constrained layout so no
    title overlaps another."""
    plt = _pyplot()
    cases = doc["cases"]
    fig, axes = plt.subplots(
        len(cases), 2, figsize=(13, 4.2 * len(cases)), squeeze=False, layout="constrained"
    )
    for row, case in zip(axes, cases, strict=True):
        ax, ax2 = row
        sides = [s for s in SIDES if case.get(s)]
        width = 0.8 / max(1, len(sides))
        for k, side in enumerate(sides):
            st = workload_stats(case[side], "single") or {}
            vals = [st.get(s, {}).get("p50", 0.0) * 1e3 for s in PLOT_STAGES]
            ys = [i + k * width for i in range(len(PLOT_STAGES))]
            ax.barh(ys, vals, height=width, label=side)
        ax.set_yticks([i + width * (len(sides) - 1) / 2 for i in range(len(PLOT_STAGES))])
        ax.set_yticklabels(PLOT_STAGES)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("p50 per call (ms, log)")
        ax.set_title(f"{case['name']}: stages\n(one query per new frame)", fontsize=10)
        ax.legend(loc="lower right")
        workloads = [w for w in WORKLOADS if any(workload_frame(case[s], w) for s in sides)]
        for k, side in enumerate(sides):
            vals = [(workload_frame(case[side], w) or {}).get("p50", 0.0) for w in workloads]
            st = workload_stats(case[side], "single") or {}
            tps = st.get("decode_tokens_per_s", {}).get("p50", 0.0)
            ax2.bar(
                [i + k * width for i in range(len(workloads))],
                vals,
                width=width,
                label=f"{side} ({tps:.1f} tok/s)",
            )
        ax2.set_xticks([i + width * (len(sides) - 1) / 2 for i in range(len(workloads))])
        ax2.set_xticklabels([WORKLOAD_TITLES[w] for w in workloads], fontsize=8)
        ax2.set_ylabel("s per frame (p50)")
        ax2.set_title(
            f"{case['name']}: end to end per workload\n(decode tokens/s in the legend)", fontsize=10
        )
        ax2.legend()
    fig.suptitle(
        f"segzero-edge bench: {doc['device_fingerprint']}\n{doc['config']['shapes']} shapes, "
        f"{doc['config']['decode_tokens']} decode tokens"
    )
    return fig


def _renamed(names: dict[str, Any]) -> dict[str, Any]:
    return {OLD_WORKLOAD_SPELLINGS.get(k, k): v for k, v in names.items()}


def _new_workload_spellings(doc: dict[str, Any]) -> None:
    """Rename, in place, the workload keys of a bench JSON written with the old spellings
    (:data:`OLD_WORKLOAD_SPELLINGS`): each side's ``workloads``, each peer's ``ratios`` and the
    config's ``inputs.workloads``."""
    for case in doc["cases"]:
        if not isinstance(case, dict):
            continue
        for side in SIDES:
            if isinstance(case.get(side), dict) and "workloads" in case[side]:
                case[side]["workloads"] = _renamed(case[side]["workloads"])
        for peer, by_workload in (case.get("ratios") or {}).items():
            case["ratios"][peer] = _renamed(by_workload)
    inputs = doc.get("config", {}).get("inputs") or {}
    if "workloads" in inputs:
        inputs["workloads"] = [OLD_WORKLOAD_SPELLINGS.get(w, w) for w in inputs["workloads"]]


def load_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read benchmark JSON files; a clear error names a file that is not one.

    Files written with the old workload spellings (``multi_query``, ``multi_object``) are read
    with the current ones (``multi-query``, ``multi-object``)."""
    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read benchmark JSON {p}: {e}") from None
        if not isinstance(doc, dict) or "cases" not in doc or "device_fingerprint" not in doc:
            raise ValueError(
                f"{p} is not a segzero-edge bench JSON (no 'cases'/'device_fingerprint')"
            )
        _new_workload_spellings(doc)
        doc["_path"] = str(p)
        docs.append(doc)
    if not docs:
        raise ValueError("no benchmark JSON files to compare")
    return docs


def plot_compare(docs: Sequence[dict[str, Any]], out: Path, side: str = "runtime") -> Path:
    """One bar group per stage (p50 ms, log), one bar per run/case; decode tok/s beside."""
    plt = _pyplot()
    series = []
    for doc in docs:
        for case in doc["cases"]:
            stats = workload_stats(case[side], "single") if case.get(side) else None
            if stats:
                label = (
                    f"{doc['device_fingerprint']} {case['name']} ({doc.get('created_at', '')[:16]})"
                )
                series.append((label, stats))
    if not series:
        raise ValueError(f"no '{side}' results in the given files")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 0.6 * len(series) + 4), width_ratios=[3, 1])
    width = 0.8 / len(series)
    for k, (label, res) in enumerate(series):
        vals = [res.get(s, {}).get("p50", 0.0) * 1e3 for s in STAGES]
        ax.barh([i + k * width for i in range(len(STAGES))], vals, height=width, label=label)
    ax.set_yticks([i + width * (len(series) - 1) / 2 for i in range(len(STAGES))])
    ax.set_yticklabels(STAGES)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("p50 per call (ms, log)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{side}: stages across runs")
    tps = [res["decode_tokens_per_s"]["p50"] for _, res in series]
    ax2.barh(range(len(series)), tps, color=[f"C{i}" for i in range(len(series))])
    ax2.set_yticks(range(len(series)))
    ax2.set_yticklabels([str(i + 1) for i in range(len(series))])
    ax2.invert_yaxis()
    ax2.set_xlabel("decode tokens/s (p50)")
    ax2.set_title("decode")
    fig.tight_layout()
    out = _save(fig, Path(out))
    plt.close(fig)
    return out
