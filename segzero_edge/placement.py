"""Where the two backends run, and how they share the CPU when both run on it."""

from __future__ import annotations


def default_overlap(reasoner_device: str, segmenter_device: str) -> bool:
    """Whether the SAM2 encode runs beside the reasoner by default.

    Yes when at least one of them runs on a GPU. Not when both run on the CPU: overlapped,
    the two must split the cores (:func:`split_threads`), and the reasoner, which holds most
    of the end-to-end time on a CPU, then runs on fewer threads for its whole vision encode
    and prefill (compute-bound, near-linear in threads) to hide the shorter SAM2 encode.
    ``segzero-edge bench`` measures both modes on every run (its overlap check) and flags a
    default that lost (figures: docs/benchmarks.md); a heavily shared machine can favour
    overlap, so measure on the quiet device before changing this. Devices are ``"cpu"`` or
    ``"gpu"`` (the backends' ``device_kind``).
    """
    return not (reasoner_device == "cpu" and segmenter_device == "cpu")


def split_threads(total: int) -> tuple[int, int]:
    """``(llama.cpp threads, onnxruntime threads)`` when both run at once on ``total`` CPU
    threads: a quarter (at least one) for the SAM2 encode, the rest for the reasoner."""
    total = max(1, int(total))
    sam = max(1, total // 4)
    return max(1, total - sam), sam
