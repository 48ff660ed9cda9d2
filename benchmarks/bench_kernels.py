"""Time the native CPU twin against the numpy / torch / PIL paths on a 1920 x 1080 frame.

Run: ``python benchmarks/bench_kernels.py [--repeats 7] [--threads 2]``. Prints the median of
the repeats (one warm-up call excluded) in ms and the speed-up of the native twin. The CUDA
kernels are timed too when a GPU is visible.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from segzero_edge import native, pixels
from segzero_edge.layout import SAM2_SIZE


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU milliseconds of ``fn`` (one warm-up call first)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def frame(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask_logits(n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    return np.stack([60.0 - np.hypot(yy - 80 - 40 * i, xx - 128) for i in range(n)]).astype(
        np.float32
    )


def cases(threads: int) -> list[tuple[str, dict[str, Callable[[], object]]]]:
    """(name, {implementation: call}); the first implementation is the native twin."""
    import torch
    import torch.nn.functional as F
    from sam2.utils.transforms import SAM2Transforms

    img = frame(1080, 1920)
    nv12 = pixels.rgb_to_nv12(img)
    lg = mask_logits(3)
    sam2 = SAM2Transforms(resolution=SAM2_SIZE, mask_threshold=0.0)
    t_lg = torch.from_numpy(lg)[None]

    def torch_masks() -> object:
        with torch.no_grad():
            up = F.interpolate(t_lg, size=(1080, 1920), mode="bilinear", align_corners=False)
            m = (up[0] > 0).any(0)
            return m.sum().item(), m.nonzero()

    def torch_sam() -> object:
        with torch.no_grad():
            return sam2(img)

    return [
        ("SAM2 input 1024x1024 f32", {
            "native": lambda: native.preprocess(img, reasoner=False, threads=threads),
            "numpy": lambda: pixels.preprocess_sam_numpy(img),
            "torch (SAM2Transforms)": torch_sam,
        }),
        ("reasoner input 840x840 u8", {
            "native": lambda: native.preprocess(img, sam=False, threads=threads),
            "PIL": lambda: pixels.preprocess_reasoner_numpy(img),
        }),
        ("fused RGB -> both", {
            "native": lambda: native.preprocess(img, threads=threads),
            "numpy + PIL": lambda: (pixels.preprocess_sam_numpy(img),
                                    pixels.preprocess_reasoner_numpy(img)),
            "torch + PIL": lambda: (torch_sam(), pixels.preprocess_reasoner_numpy(img)),
        }),
        ("fused NV12 -> both", {
            "native": lambda: native.preprocess(nv12, "nv12", threads=threads),
            "numpy + PIL": lambda: (lambda rgb: (pixels.preprocess_sam_numpy(rgb),
                                                 pixels.preprocess_reasoner_numpy(rgb)))(
                pixels.nv12_to_rgb(nv12)),
        }),
        ("masks 3x256x256 -> 1920x1080", {
            "native": lambda: native.postprocess_masks(lg, (1080, 1920), threads=threads),
            "numpy": lambda: pixels.postprocess_masks_numpy(lg, (1080, 1920)),
            "torch (F.interpolate)": torch_masks,
        }),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="native / torch threads (0 = all)")
    args = ap.parse_args()
    ok, why = native.available()
    if not ok:
        raise SystemExit(f"native library unavailable: {why}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"native: {why}; torch threads {torch.get_num_threads()}; repeats {args.repeats}")
    print("speed-up = other / native (wall clock); CPU ms = process CPU time, all threads")
    head = f"{'case':30s} {'implementation':23s} {'wall ms':>8s} {'speed-up':>9s} {'CPU ms':>8s}"
    print(head)
    for name, impls in cases(args.threads):
        timings = {k: median_ms(fn, args.repeats) for k, fn in impls.items()}
        base = timings["native"][0]
        for impl, (wall, cpu) in timings.items():
            ratio = "" if impl == "native" else f"{wall / base:.2f}x"
            print(f"{name:30s} {impl:23s} {wall:8.2f} {ratio:>9s} {cpu:8.2f}")
    if native.cuda_available():
        src = torch.from_numpy(frame(1080, 1920)).cuda()
        sam = torch.empty((1, 3, 1024, 1024), dtype=torch.float32, device="cuda")
        rsn = torch.empty((840, 840, 3), dtype=torch.uint8, device="cuda")
        stream = torch.cuda.current_stream().cuda_stream

        def fused_cuda() -> None:
            native.preprocess_cuda(
                src.data_ptr(),
                1080,
                1920,
                1920 * 3,
                "rgb",
                sam.data_ptr(),
                rsn.data_ptr(),
                stream=stream,
            )
            torch.cuda.synchronize()

        wall, _ = median_ms(fused_cuda, args.repeats)
        print(f"{'fused RGB -> both':30s} {'CUDA (device buffers)':23s} {wall:8.2f}")


if __name__ == "__main__":
    main()
