"""Where the two backends run, and how they share the CPU when both run on it."""

from __future__ import annotations


def default_overlap(reasoner_device: str, segmenter_device: str) -> bool:
    """Whether the SAM2 encode runs beside the reasoner by default.

    Yes when at least one of them runs on a GPU. Not when both run on the CPU: overlapped,
    the two must split the cores (:func:`split_threads`), and the reasoner, which holds the
    end-to-end time (97% of it at Qwen2.5-VL-3B shapes on 2 cores), then runs on fewer threads
    for its whole vision encode and prefill (compute-bound, near-linear in threads) to hide a
    SAM2 encode of a few seconds. ``segzero-edge bench`` measures both modes on every run
    (its overlap check) and flags a default that lost; on a heavily shared 2-core machine it
    measured overlapped ahead (load average 13: the process with fewer, always-busy threads
    gets more of the contended cores), so re-measure on the quiet device before changing this.
    Devices are ``"cpu"`` or ``"gpu"`` (the backends' ``device_kind``).
    """
    return not (reasoner_device == "cpu" and segmenter_device == "cpu")


def split_threads(total: int) -> tuple[int, int]:
    """``(llama.cpp threads, onnxruntime threads)`` when both run at once on ``total`` CPU
    threads: a quarter (at least one) for the SAM2 encode, the rest for the reasoner."""
    total = max(1, int(total))
    sam = max(1, total // 4)
    return max(1, total - sam), sam
