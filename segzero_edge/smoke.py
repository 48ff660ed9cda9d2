"""Smoke tests of the native libraries the runtime loads, each in its own child process.

A native fault (SIGSEGV in llama.cpp's AMX kernels, SIGILL from a library built for a newer CPU
than this one) kills the process it happens in. Run in a child, it becomes a result that names
the library and the signal, and the caller (``segzero-edge doctor``) lives on.

``python -m segzero_edge.smoke NAME [--bundle DIR]`` is the child: it loads library ``NAME``
(one of :data:`LIBRARIES`), calls into it and prints one ``SEGZERO_SMOKE_RESULT {json}`` line.
With a bundle, the llama.cpp child also loads the bundle's reasoner and generates a few tokens
for a synthetic image (libmtmd's image encoder, then quantized decoding), and the onnxruntime
child runs the SAM2 decoder graph once on the CPU execution provider.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LIBRARIES = {
    "llama.cpp": "llama.cpp + libmtmd (llama-cpp-python)",
    "onnxruntime": "onnxruntime",
    "kernels": "libsegzero_kernels (csrc/)",
}
RESULT_MARK = "SEGZERO_SMOKE_RESULT "
SMOKE_TOKENS = 8


def describe_exit(returncode: int) -> str:
    """``-11`` -> ``"killed by SIGSEGV (signal 11)"``; ``3`` -> ``"exit status 3"``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} (signal {-returncode})"
    return f"exit status {returncode}"


@dataclass
class SmokeResult:
    """What one child reported: ``ok``; ``died`` when a signal ended it; ``reason`` says why."""

    name: str
    ok: bool
    reason: str
    died: bool = False
    returncode: int | None = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- the children ---------------------------------------------------------------------------


def _synthetic_image(size: int) -> Any:
    import numpy as np

    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], axis=-1)
    return img.astype(np.uint8)


def smoke_llama_cpp(bundle: Path | None) -> dict[str, Any]:
    """Load libllama/libggml/libmtmd, read llama.cpp's CPU features and buffer types; with a
    bundle, generate ``SMOKE_TOKENS`` tokens for a synthetic image."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    from .reasoner import llama_system

    llama_system.ensure_cpu_backend()  # a GGML_BACKEND_DL build loads its CPU variant here
    llama_cpp.llama_backend_init()
    details: dict[str, Any] = {
        "version": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "mtmd_marker": (mtmd_cpp.mtmd_default_marker() or b"").decode(),
        **llama_system.describe(),
        "summary": "libllama, libggml and libmtmd loaded",
    }
    if bundle is not None:
        from .bundle import load_bundle
        from .layout import MMPROJ_FILE, REASONER_FILE, REASONER_SIZE
        from .reasoner.defaults import DEFAULT_N_CTX
        from .reasoner.llama_cpp import LlamaCppReasoner

        b = load_bundle(bundle)
        with LlamaCppReasoner(
            b.path(REASONER_FILE),
            b.path(MMPROJ_FILE),
            n_ctx=b.manifest.reasoner.n_ctx or DEFAULT_N_CTX,
            max_new_tokens=SMOKE_TOKENS,
            grammar=False,
            warmup=False,
        ) as r:
            out = r.generate(_synthetic_image(REASONER_SIZE), "smoke test")
            details.update(
                reasoner_info={k: v for k, v in r.info.items() if k != "cpu_features"},
                generated_tokens=out.n_generated_tokens,
                timings=out.timings,
            )
            details["summary"] += (
                f"; the bundle's reasoner encoded an image and generated "
                f"{out.n_generated_tokens} tokens"
            )
    return details


def smoke_onnxruntime(bundle: Path | None) -> dict[str, Any]:
    """Load onnxruntime; with a bundle, run the SAM2 decoder once on zeros (CPU provider)."""
    import numpy as np
    import onnxruntime as ort

    details: dict[str, Any] = {
        "version": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "summary": f"onnxruntime {ort.__version__} loaded",
    }
    if bundle is not None:
        from .layout import SAM2_DECODER_FILE

        sess = ort.InferenceSession(
            str(Path(bundle) / SAM2_DECODER_FILE), providers=["CPUExecutionProvider"]
        )
        dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
        feeds = {
            i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtypes[i.type])
            for i in sess.get_inputs()
        }
        outs = sess.run(None, feeds)
        details["decoder_outputs"] = [list(o.shape) for o in outs]
        details["summary"] += "; the bundle's SAM2 decoder ran on CPU"
    return details


def smoke_kernels(bundle: Path | None) -> dict[str, Any]:
    """Load libsegzero_kernels and run its CPU pre- and post-processing on a small frame."""
    import numpy as np

    from . import native

    ok, why = native.available()
    if not ok:
        raise RuntimeError(why)
    frame = _synthetic_image(64)[:48]
    sam, small = native.preprocess(frame, sam_size=32, reasoner_size=28)
    assert sam is not None and small is not None and np.isfinite(sam).all()
    logits = np.linspace(-1, 1, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    _, area, _ = native.postprocess_masks(logits, (48, 64))
    return {
        "library": why,
        "build_info": native.build_info(),
        "cuda_kernels": native.built_with_cuda(),
        "mask_area": area,
        "summary": f"CPU pre/post-processing ran ({native.build_info()})",
    }


CHILDREN: dict[str, Callable[[Path | None], dict[str, Any]]] = {
    "llama.cpp": smoke_llama_cpp,
    "onnxruntime": smoke_onnxruntime,
    "kernels": smoke_kernels,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m segzero_edge.smoke",
        description="Smoke-test one native library of the runtime (run by segzero-edge doctor "
        "in a child process, so that a crash names the library instead of killing the caller).",
    )
    p.add_argument("name", choices=list(CHILDREN))
    p.add_argument("--bundle", type=Path, help="also load and run this bundle's models")
    args = p.parse_args(argv)
    details = CHILDREN[args.name](args.bundle)
    print(RESULT_MARK + json.dumps(details, default=str), flush=True)
    return 0


# --- the parent -----------------------------------------------------------------------------


def run_smoke(name: str, bundle: Path | None = None, timeout_s: float = 600) -> SmokeResult:
    """Run the ``name`` child and turn whatever happened into a :class:`SmokeResult`."""
    if name not in CHILDREN:
        raise ValueError(f"unknown library {name!r}; expected one of {list(CHILDREN)}")
    what = LIBRARIES[name]
    cmd = [sys.executable, "-m", "segzero_edge.smoke", name]
    if bundle is not None:
        cmd += ["--bundle", str(bundle)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return SmokeResult(
            name, False, f"{what}: no answer within {timeout_s:.0f} s", returncode=None
        )
    seconds = time.perf_counter() - t0
    lines = proc.stdout.splitlines()
    found = [ln[len(RESULT_MARK) :] for ln in lines if ln.startswith(RESULT_MARK)]
    details = json.loads(found[-1]) if found else {}
    if proc.returncode == 0 and found:
        summary = str(details.get("summary", "ok"))
        return SmokeResult(name, True, summary, False, 0, seconds, details)
    died = proc.returncode < 0
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
    why = f"{what}: child process {describe_exit(proc.returncode)}"
    if died:
        why += " (a native crash inside this library)"
    if tail:
        why += f"; last message: {tail[0].strip()}"
    return SmokeResult(name, False, why, died, proc.returncode, seconds, details)


if __name__ == "__main__":
    sys.exit(main())
