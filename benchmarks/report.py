"""Ratios, roofline rows and the printed tables of one benchmark run."""

from __future__ import annotations

from typing import Any

from .workload import STAGES


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.2f}" if v >= 1e-4 else f"{v * 1e3:.4f}"


def ratios(runtime: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Reference / runtime per stage (p50): > 1 means this runtime is faster.

    Plus decode tokens/s (runtime / reference) and peak RSS (reference / runtime).
    """
    out: dict[str, float] = {}
    rs, fs = runtime["stats"], reference["stats"]
    for stage in STAGES:
        if stage in rs and stage in fs and rs[stage]["p50"] > 0:
            out[stage] = fs[stage]["p50"] / rs[stage]["p50"]
    if "decode_tokens_per_s" in rs and "decode_tokens_per_s" in fs:
        out["decode_tokens_per_s"] = (
            rs["decode_tokens_per_s"]["p50"] / fs["decode_tokens_per_s"]["p50"]
        )
    if runtime.get("peak_rss_mib") and reference.get("peak_rss_mib"):
        out["peak_rss"] = reference["peak_rss_mib"] / runtime["peak_rss_mib"]
    return out


def ratio_table(case: dict[str, Any]) -> str:
    """The side-by-side table of one case (runtime vs reference)."""
    rt, ref = case.get("runtime"), case.get("reference")
    rat = case.get("ratios", {})
    lines = [
        f"{'stage (p50, ms)':<22}{'runtime':>12}{'reference':>12}{'ref/runtime':>13}",
        "-" * 59,
    ]
    for stage in STAGES:
        a = rt["stats"].get(stage, {}).get("p50") if rt else None
        b = ref["stats"].get(stage, {}).get("p50") if ref else None
        r = f"{rat[stage]:12.2f}x" if stage in rat else f"{'-':>13}"
        lines.append(f"{stage:<22}{_ms(a):>12}{_ms(b):>12}{r}")
    for q in ("p90", "p99"):
        a = rt["stats"]["total"][q] if rt else None
        b = ref["stats"]["total"][q] if ref else None
        r = f"{b / a:12.2f}x" if a and b else f"{'-':>13}"
        lines.append(f"{'total ' + q:<22}{_ms(a):>12}{_ms(b):>12}{r}")
    a = rt["stats"]["decode_tokens_per_s"]["p50"] if rt else None
    b = ref["stats"]["decode_tokens_per_s"]["p50"] if ref else None
    r = f"{rat['decode_tokens_per_s']:12.2f}x" if "decode_tokens_per_s" in rat else f"{'-':>13}"
    fa = f"{a:12.1f}" if a else f"{'-':>12}"
    fb = f"{b:12.1f}" if b else f"{'-':>12}"
    lines.append(f"{'decode tokens/s':<22}{fa}{fb}{r}  (runtime/ref)")
    a = rt.get("peak_rss_mib") if rt else None
    b = ref.get("peak_rss_mib") if ref else None
    r = f"{rat['peak_rss']:12.2f}x" if "peak_rss" in rat else f"{'-':>13}"
    fa = f"{a:12.0f}" if a else f"{'-':>12}"
    fb = f"{b:12.0f}" if b else f"{'-':>12}"
    lines.append(f"{'peak RSS MiB':<22}{fa}{fb}{r}")
    for side, d in (("runtime", rt), ("reference", ref)):
        if d and d.get("gpu_peak_mib") is not None:
            lines.append(f"{'GPU memory peak MiB':<22}{side:>12} {d['gpu_peak_mib']:.0f}")
    return "\n".join(lines)


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
