"""Per-frame ``tracker.update()`` latency against ``segment()`` latency on one bundle.

    python benchmarks/track_latency.py --bundle BUNDLE --frames 14 --decode-tokens 64

Both run in this one process on the same bundle, backends and synthetic 640 x 480 frames (a
disc moving over a noisy gradient). ``segment()`` runs the bundle's reasoner for exactly
``--decode-tokens`` tokens (EOS ignored, no grammar: random-weight bundles never stop or
answer by themselves, so the work per call is fixed), then takes a fixed box + point answer
in place of the generated text so that SAM2 encodes and decodes as for a real answer; the
SAM2 frame cache is off. The tracker is seeded once with the same box + point (standing in
for the reasoner's answer) and then updated on every following frame; frames from
``num_maskmem`` on attend to a full memory (conditioning frame + 6 frames, 16 object
pointers): the steady state reported.
Prints the stage breakdown of both and the ratio update / segment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.reasoner.defaults import DEFAULT_N_CTX


def frames(n: int, hw: tuple[int, int] = (480, 640), seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB frames: a red disc crossing a noisy gradient."""
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([60 + 100 * xx / w, 90 + 50 * yy / h, 110 + 0 * xx], axis=-1)
    out = []
    for i in range(n):
        img = base + rng.normal(0, 8, base.shape)
        cx, cy = w * (0.2 + 0.6 * i / max(n - 1, 1)), h * 0.5
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.15 * h) ** 2] = (220, 40, 40)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


class FixedAnswerReasoner:
    """Answers with a box + point on the disc of frame 0 (840 x 840 resize coordinates): the
    seed of the tracker."""

    name = "fixed-answer"

    def __init__(self, hw: tuple[int, int]) -> None:
        from segzero_edge.answer import AnswerObject, format_list_answer

        h, w = hw
        sx, sy = 840 / w, 840 / h
        cx, cy, r = 0.2 * w, 0.5 * h, 0.15 * h
        box = (int((cx - r) * sx), int((cy - r) * sy), int((cx + r) * sx), int((cy + r) * sy))
        self.text = format_list_answer([AnswerObject(box, ((int(cx * sx), int(cy * sy)),))])

    device_kind = "cpu"
    n_threads = None
    caches_prefix = False

    def generate(self, image: np.ndarray, prompt: str, *, frame_key: str | None = None) -> Any:
        from segzero_edge.backends import ReasonerOutput

        return ReasonerOutput(self.text, False, 0, 0, {})

    def close(self) -> None:
        pass


class FixedWorkReasoner:
    """The bundle's reasoner doing its full work, answering with a fixed, parseable answer."""

    def __init__(self, inner: Any, answer: str) -> None:
        self.inner, self.answer = inner, answer
        self.name = f"{inner.name}+fixed-answer"
        self.device_kind = inner.device_kind
        self.n_threads = inner.n_threads
        self.caches_prefix = inner.caches_prefix

    def generate(self, image: np.ndarray, prompt: str, *, frame_key: str | None = None) -> Any:
        out = self.inner.generate(image, prompt, frame_key=frame_key)
        out.text, out.truncated = self.answer, False
        return out

    def close(self) -> None:
        self.inner.close()


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean_ms": 1000 * statistics.fmean(values),
        "sd_ms": 1000 * (statistics.stdev(values) if len(values) > 1 else 0.0),
        "n": len(values),
    }


def _stage_means(timings: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: 1000 * statistics.fmean(t.get(k, 0.0) for t in timings) for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: the tiny demo bundle)")
    ap.add_argument("--frames", type=int, default=14, help="tracked clip length (>= 9)")
    ap.add_argument("--segment-calls", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    backends = ["auto", "tensorrt", "onnxruntime"]
    ap.add_argument("--segmenter-backend", default="auto", choices=backends)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if args.frames < 9 or args.segment_calls < 1:
        ap.error("--frames must be >= 9 and --segment-calls >= 1")

    from segzero_bench.hooks import FixedLengthReasoner
    from segzero_edge import SegZeroEdge
    from segzero_edge.bundle import load_bundle
    from segzero_edge.bundle_memory import open_memory
    from segzero_edge.commands.segment import resolve_bundle
    from segzero_edge.layout import MMPROJ_FILE, REASONER_FILE
    from segzero_edge.segmenter.auto import open_segmenter

    bundle = load_bundle(resolve_bundle(args.bundle))
    opts = {"threads": args.threads} if args.threads else {}
    segmenter = open_segmenter(bundle.root, backend=args.segmenter_backend, **opts)
    mem_backend = segmenter.backend  # the memory runs where the segmenter runs
    memory = open_memory(bundle.root, mem_backend, **({} if mem_backend == "tensorrt" else opts))
    reasoner = FixedLengthReasoner(
        bundle.path(REASONER_FILE),
        bundle.path(MMPROJ_FILE),
        tokens=args.decode_tokens,
        n_threads=args.threads,
        n_ctx=bundle.manifest.reasoner.n_ctx or DEFAULT_N_CTX,
    )
    clip = frames(args.frames + args.segment_calls + 1)
    hw = clip[0].shape[:2]
    answer = FixedAnswerReasoner(hw).text
    seg_model = SegZeroEdge(
        FixedWorkReasoner(reasoner, answer), segmenter, family="multi-object", cache_frames=0
    )
    seg_model.segment(clip[-1], "the red ball")  # warm-up
    seg_times: list[dict[str, float]] = []
    for img in clip[args.frames : args.frames + args.segment_calls]:
        seg_times.append(seg_model.segment(img, "the red ball").timings)
        print(f"segment(): {seg_times[-1]['total'] * 1000:.0f} ms", file=sys.stderr)

    track_model = SegZeroEdge(
        FixedAnswerReasoner(hw), segmenter, family="multi-object", memory=memory
    )
    tracker = track_model.track(clip[0], "the red ball", num_frames=args.frames)
    upd_times: list[dict[str, float]] = []
    t_wall = time.perf_counter()
    for img in clip[1 : args.frames]:
        r = tracker.update(img)
        upd_times.append(r.timings)
        print(
            f"update() frame {r.frame_index}: {r.timings['total'] * 1000:.0f} ms "
            f"(present {r.present})",
            file=sys.stderr,
        )
    wall = time.perf_counter() - t_wall
    steady = upd_times[tracker.config.num_maskmem - 1 :]  # frames >= num_maskmem
    seg_total = _stats([t["total"] for t in seg_times])
    upd_all = _stats([t["total"] for t in upd_times])
    upd_steady = _stats([t["total"] for t in steady])
    seg_stages = (
        "preprocess",
        "reason",
        "vision_encode",
        "prefill",
        "decode",
        "sam_wait",
        "sam_encode",
        "sam_decode",
        "postprocess",
    )
    upd_stages = (
        "sam_preprocess",
        "sam_encode",
        "memory_attention",
        "sam_decode",
        "memory_encode",
        "postprocess",
    )
    report = {
        "bundle": str(bundle.root),
        "segmenter": segmenter.name,
        "memory": memory.name,
        "decode_tokens": args.decode_tokens,
        "segment": {**seg_total, "stages_ms": _stage_means(seg_times, seg_stages)},
        "update_all": upd_all,
        "update_first_ms": 1000 * upd_times[0]["total"],
        "update_steady": {**upd_steady, "stages_ms": _stage_means(steady, upd_stages)},
        "update_fps": len(upd_times) / wall,
        "ratio_update_to_segment": upd_steady["mean_ms"] / seg_total["mean_ms"],
        "tracker_memory_mib": tracker.memory_bytes() / 2**20,
    }
    print(f"bundle {bundle.root} ({segmenter.name} SAM2, {memory.name} memory)")
    print(
        f"segment():  {seg_total['mean_ms']:8.0f} ms +- {seg_total['sd_ms']:.0f} "
        f"(n={seg_total['n']}, {args.decode_tokens} decoded tokens)  "
        + ", ".join(f"{k} {v:.0f}" for k, v in report["segment"]["stages_ms"].items())
    )
    print(
        f"update():   {upd_steady['mean_ms']:8.0f} ms +- {upd_steady['sd_ms']:.0f} "
        f"(n={upd_steady['n']}, full memory)  "
        + ", ".join(f"{k} {v:.0f}" for k, v in report["update_steady"]["stages_ms"].items())
    )
    print(
        f"update() over all {upd_all['n']} frames: {upd_all['mean_ms']:.0f} ms "
        f"(frame 1, one memory frame: {report['update_first_ms']:.0f} ms)"
    )
    print(f"ratio update / segment: {report['ratio_update_to_segment']:.3f}")
    print(f"tracker memory: {report['tracker_memory_mib']:.2f} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    tracker.close()
    seg_model.close()
    memory.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
