"""Matplotlib PNGs: one run (runtime vs reference per stage) and a comparison across runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segzero_edge.fileio import atomic_path

from .workload import STAGES

PLOT_STAGES = [s for s in STAGES if s != "total"]


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
    """Per case: p50 ms per stage for both sides (log scale) and end-to-end p50/p90/p99."""
    plt = _pyplot()
    cases = doc["cases"]
    fig, axes = plt.subplots(len(cases), 2, figsize=(12, 3.6 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        ax, ax2 = row
        sides = [s for s in ("runtime", "reference") if case.get(s)]
        width = 0.8 / max(1, len(sides))
        for k, side in enumerate(sides):
            st = case[side]["stats"]
            vals = [st.get(s, {}).get("p50", 0.0) * 1e3 for s in PLOT_STAGES]
            ys = [i + k * width for i in range(len(PLOT_STAGES))]
            ax.barh(ys, vals, height=width, label=side)
        ax.set_yticks([i + width * (len(sides) - 1) / 2 for i in range(len(PLOT_STAGES))])
        ax.set_yticklabels(PLOT_STAGES)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("p50 per call (ms, log)")
        ax.set_title(f"{case['name']}: stages")
        ax.legend(loc="lower right")
        qs = ("p50", "p90", "p99")
        for k, side in enumerate(sides):
            tot = case[side]["stats"]["total"]
            tps = case[side]["stats"]["decode_tokens_per_s"]["p50"]
            ax2.bar(
                [i + k * width for i in range(3)],
                [tot[q] * 1e3 for q in qs],
                width=width,
                label=f"{side} ({tps:.1f} tok/s)",
            )
        ax2.set_xticks([i + width * (len(sides) - 1) / 2 for i in range(3)])
        ax2.set_xticklabels([f"end-to-end {q}" for q in qs])
        ax2.set_ylabel("ms")
        ax2.set_title(f"{case['name']}: end to end (decode tokens/s in legend)")
        ax2.legend()
    fig.suptitle(
        f"segzero-edge bench: {doc['device_fingerprint']}, {doc['config']['shapes']} shapes, "
        f"{doc['config']['decode_tokens']} decode tokens"
    )
    fig.tight_layout()
    out = _save(fig, Path(out))
    plt.close(fig)
    return out


def load_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read benchmark JSON files; a clear error names a file that is not one."""
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
            if case.get(side):
                label = (
                    f"{doc['device_fingerprint']} {case['name']} ({doc.get('created_at', '')[:16]})"
                )
                series.append((label, case[side]))
    if not series:
        raise ValueError(f"no '{side}' results in the given files")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 0.6 * len(series) + 4), width_ratios=[3, 1])
    width = 0.8 / len(series)
    for k, (label, res) in enumerate(series):
        vals = [res["stats"].get(s, {}).get("p50", 0.0) * 1e3 for s in STAGES]
        ax.barh([i + k * width for i in range(len(STAGES))], vals, height=width, label=label)
    ax.set_yticks([i + width * (len(series) - 1) / 2 for i in range(len(STAGES))])
    ax.set_yticklabels(STAGES)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("p50 per call (ms, log)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{side}: stages across runs")
    tps = [res["stats"]["decode_tokens_per_s"]["p50"] for _, res in series]
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
