"""Ratios, the printed tables and the memory comparison of one benchmark run."""

from __future__ import annotations

from typing import Any

from .workload import CALLS, STAGES, WORKLOAD_TITLES, WORKLOADS, overlap_efficiency

PEERS = ("reference", "stock")
RATIO_LABEL = {"reference": "ref/rt", "stock": "stock/rt"}


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.2f}" if v >= 1e-4 else f"{v * 1e3:.4f}"


def workload_stats(side: dict[str, Any], workload: str = "single") -> dict[str, Any] | None:
    """Per-call stage stats of ``workload`` (``stats`` of a schema-1 file for ``single``)."""
    wl = side.get("workloads", {}).get(workload)
    if wl is not None:
        return wl["stats"]
    return side.get("stats") if workload == "single" else None


def workload_frame(side: dict[str, Any], workload: str) -> dict[str, float] | None:
    wl = side.get("workloads", {}).get(workload)
    return wl.get("frame") if wl else None


def ratios(runtime: dict[str, Any], peer: dict[str, Any], workload: str = "single") -> dict:
    """Peer / runtime per stage (p50), end to end p90 and per frame: > 1 = runtime faster.

    Plus decode tokens/s (runtime / peer) and peak RSS (peer / runtime).
    """
    out: dict[str, float] = {}
    rs, ps = workload_stats(runtime, workload), workload_stats(peer, workload)
    if rs is None or ps is None:
        return out
    for stage in STAGES:
        if stage in rs and stage in ps and rs[stage]["p50"] > 0:
            out[stage] = ps[stage]["p50"] / rs[stage]["p50"]
    if rs["total"]["p90"] > 0:
        out["total_p90"] = ps["total"]["p90"] / rs["total"]["p90"]
    rf, pf = workload_frame(runtime, workload), workload_frame(peer, workload)
    if rf and pf and rf["p50"] > 0:
        out["frame"] = pf["p50"] / rf["p50"]
        out["frame_p90"] = pf["p90"] / rf["p90"]
    if "decode_tokens_per_s" in rs and "decode_tokens_per_s" in ps:
        out["decode_tokens_per_s"] = (
            rs["decode_tokens_per_s"]["p50"] / ps["decode_tokens_per_s"]["p50"]
        )
    if runtime.get("peak_rss_mib") and peer.get("peak_rss_mib"):
        out["peak_rss"] = peer["peak_rss_mib"] / runtime["peak_rss_mib"]
    return out


def case_ratios(case: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{peer: {workload: ratios}}`` of the runtime against every peer measured."""
    rt = case.get("runtime")
    if not rt:
        return {}
    return {
        peer: {w: ratios(rt, case[peer], w) for w in WORKLOADS if workload_stats(rt, w)}
        for peer in PEERS
        if case.get(peer)
    }


def ratio_table(case: dict[str, Any], workload: str = "single") -> str:
    """Side by side p50 per stage for one workload, with peer/runtime ratios."""
    sides = [s for s in ("runtime", *PEERS) if case.get(s) and workload_stats(case[s], workload)]
    peers = [p for p in PEERS if p in sides and "runtime" in sides]
    rat = {p: ratios(case["runtime"], case[p], workload) for p in peers}
    head = f"{'stage (ms)':<22}" + "".join(f"{s:>12}" for s in sides)
    head += "".join(f"{RATIO_LABEL[p]:>12}" for p in peers)
    lines = [f"workload {workload}: {WORKLOAD_TITLES.get(workload, workload)}", head]
    lines.append("-" * len(head))

    def row(label: str, vals: list[float | None], rats: list[float | None]) -> str:
        r = f"{label:<22}" + "".join(f"{_ms(v):>12}" for v in vals)
        return r + "".join(f"{v:11.2f}x" if v else f"{'-':>12}" for v in rats)

    st = {s: workload_stats(case[s], workload) or {} for s in sides}
    for stage in STAGES:
        vals = [st[s].get(stage, {}).get("p50") for s in sides]
        lines.append(row(f"{stage} p50", vals, [rat[p].get(stage) for p in peers]))
    vals = [st[s]["total"]["p90"] for s in sides]
    lines.append(row("total p90", vals, [rat[p].get("total_p90") for p in peers]))
    if any(
        workload_frame(case[s], workload) and case[s]["workloads"][workload]["calls"] > 1
        for s in sides
    ):
        for q in ("p50", "p90"):
            vals = [(workload_frame(case[s], workload) or {}).get(q) for s in sides]
            key = "frame" if q == "p50" else "frame_p90"
            lines.append(
                row(f"frame ({CALLS[workload]} calls) {q}", vals, [rat[p].get(key) for p in peers])
            )
    tps = [st[s].get("decode_tokens_per_s", {}).get("p50") for s in sides]
    r = f"{'decode tokens/s':<22}" + "".join(f"{v:12.1f}" if v else f"{'-':>12}" for v in tps)
    r += "".join(
        f"{rat[p]['decode_tokens_per_s']:11.2f}x" if "decode_tokens_per_s" in rat[p] else "-"
        for p in peers
    )
    lines.append(r + "  (runtime/peer)")
    eff = [overlap_efficiency(st[s]) for s in sides]
    lines.append(
        f"{'overlap efficiency':<22}" + "".join(f"{v:12.2f}" if v else f"{'-':>12}" for v in eff)
    )
    return "\n".join(lines)


def memory_table(case: dict[str, Any]) -> str:
    """Peak RSS (and GPU memory) per side, with peer/runtime ratios."""
    sides = [s for s in ("runtime", *PEERS) if case.get(s)]
    lines = [f"{'peak memory (MiB)':<22}" + "".join(f"{s:>12}" for s in sides)]
    lines.append(
        f"{'peak RSS':<22}" + "".join(f"{case[s].get('peak_rss_mib', 0):12.0f}" for s in sides)
    )
    if any(case[s].get("gpu_peak_mib") is not None for s in sides):
        lines.append(
            f"{'GPU memory in use':<22}"
            + "".join(f"{case[s].get('gpu_peak_mib') or 0:12.0f}" for s in sides)
        )
    mem = case.get("memory")
    if mem:
        lines.append(
            f"export estimate (runtime): {mem['estimate_gb']:.2f} GB vs measured peak "
            f"{mem['measured_gb']:.2f} GB ({mem['difference']:+.0%}; {mem['what']})"
        )
    return "\n".join(lines)


def overlap_table(case: dict[str, Any]) -> str | None:
    """Overlapped vs sequential end to end (single workload) of the runtime."""
    ov = case.get("overlap")
    if not ov:
        return None
    return (
        f"overlap (runtime, one query per new frame, p50, {ov['thread_budget']} CPU threads): "
        f"overlapped {_ms(ov['overlapped'])} ms (threads {ov['threads_overlapped']}), "
        f"sequential {_ms(ov['sequential'])} ms -> "
        f"{ov['winner']} wins by {ov['gain']:.2f}x; the default here is "
        f"{'overlapped' if ov['default'] else 'sequential'}"
        f"{'' if ov['default_is_winner'] else ' (NOT the winner: see placement.default_overlap)'}"
    )


def roofline_table(roof: dict[str, Any], measured: dict[str, float], here: str | None) -> str:
    """Floors per Jetson beside the measured runtime p50 (ms); fraction where measured on one."""
    targets = [k for k in roof if k != "workload"]
    head = f"{'stage (ms)':<16}{'measured':>11}" + "".join(f"{t:>15}" for t in targets)
    if here:
        head += f"{'fraction':>10}"
    lines = [head, "-" * len(head)]
    for stage in ("vision_encode", "prefill", "decode", "sam_encode", "sam_decode", "total"):
        row = f"{stage:<16}{_ms(measured.get(stage)):>11}"
        for t in targets:
            row += f"{_ms(roof[t]['floors_s'].get(stage)):>15}"
        if here:
            floor = roof[here]["floors_s"].get(stage)
            m = measured.get(stage)
            row += f"{floor / m:10.1%}" if floor and m else f"{'-':>10}"
        lines.append(row)
    row = f"{'decode tok/s':<16}{measured.get('decode_tokens_per_s', 0):>11.1f}"
    row += "".join(f"{roof[t]['decode_tokens_per_s']:>15.1f}" for t in targets)
    lines.append(row + "   (ceilings)")
    return "\n".join(lines)
