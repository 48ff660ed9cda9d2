"""``segzero-edge doctor``: the device fingerprint and which backends can run here (and why not)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="report the device fingerprint and which backends are available (and why not)",
        description=(
            "Probe this machine: GPU and compute capability, TensorRT, CUDA (cuda-python), "
            "onnxruntime execution providers, llama.cpp GPU offload and the native kernels. "
            "Each backend is listed with the reason it is or is not usable. With --bundle, "
            "also says whether the bundle has current TensorRT engines for this device."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--bundle", type=Path, help="also check this bundle's engines for this device")
    p.set_defaults(func=run)


def _entry(available: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"available": bool(available), "reason": reason, **extra}


def check_tensorrt() -> dict[str, Any]:
    from ..device import tensorrt_version
    from ..segmenter.tensorrt import available

    ok, why = available()
    return _entry(ok, why, version=tensorrt_version()[0])


def check_cuda() -> dict[str, Any]:
    from ..device import probe_gpu_cuda_python

    gpu, why = probe_gpu_cuda_python()
    if gpu is None:
        return _entry(False, why)
    major, minor = gpu.compute_capability
    return _entry(True, f"{gpu.name} (compute capability {major}.{minor}) via cuda-python")


def check_onnxruntime() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return _entry(False, f"onnxruntime not installed ({e})", providers=[])
    providers = list(ort.get_available_providers())
    gpu = [p for p in providers if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    how = "with GPU providers " + ", ".join(gpu) if gpu else "CPU only"
    return _entry(True, f"onnxruntime {ort.__version__}, {how}", providers=providers)


def check_llama_cpp() -> dict[str, Any]:
    try:
        import llama_cpp
    except Exception as e:  # ImportError, or OSError when the shared library fails to load
        return _entry(False, f"llama_cpp not importable ({e})", gpu_offload=False)
    try:
        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as e:
        return _entry(True, f"llama-cpp-python {llama_cpp.__version__}; offload query: {e}")
    how = "GPU offload supported" if offload else "CPU only (built without CUDA: no GPU offload)"
    return _entry(True, f"llama-cpp-python {llama_cpp.__version__}, {how}", gpu_offload=offload)


def check_native() -> dict[str, Any]:
    try:
        native = importlib.import_module("..native", __package__)
    except ImportError as e:
        return _entry(False, f"not built ({e})")
    try:
        ok, why = native.available()
        cuda = bool(ok and native.cuda_available())
    except Exception as e:
        return _entry(False, f"not usable: {type(e).__name__}: {e}")
    if ok and not cuda:
        why += "; CPU kernels only (no CUDA kernels or no CUDA device)"
    return _entry(ok, why if ok else f"not built: {why}", cuda=cuda)


CHECKS = {
    "tensorrt": check_tensorrt,
    "cuda": check_cuda,
    "onnxruntime": check_onnxruntime,
    "llama.cpp": check_llama_cpp,
    "native": check_native,
}


def report(bundle: Path | None = None) -> dict[str, Any]:
    """The doctor report as a dict: ``device``, ``backends`` (name -> available, reason)."""
    from ..device import device_info

    out: dict[str, Any] = {"device": device_info(), "backends": {}}
    for name, check in CHECKS.items():
        try:
            out["backends"][name] = check()
        except Exception as e:  # a probe must never take the report down
            out["backends"][name] = _entry(False, f"probe failed: {type(e).__name__}: {e}")
    if bundle is not None:
        from ..engine_cache import engine_dir, engine_status

        out["engines"] = {
            "directory": str(engine_dir(bundle)),
            "status": engine_status(bundle) if bundle.is_dir() else {},
        }
    return out


def format_text(rep: dict[str, Any]) -> str:
    dev = rep["device"]
    gpu = dev["gpu"]
    lines = [
        f"device fingerprint: {dev['fingerprint']}",
        f"machine: {dev['system']} {dev['machine']}, Python {dev['python']}"
        + (f", {dev['jetson_model']}" if dev.get("jetson_model") else ""),
        "gpu: "
        + (
            f"{gpu['name']} (compute capability {gpu['compute_capability']}, "
            f"{gpu['total_memory_mib']} MiB, via {gpu['source']})"
            if gpu
            else f"none ({dev['gpu_reason']})"
        ),
        f"L4T: {dev['l4t_release'] or 'none (' + dev['l4t_reason'] + ')'}",
        "backends:",
    ]
    for name, entry in rep["backends"].items():
        mark = "yes" if entry["available"] else "no "
        lines.append(f"  {name:<12} {mark}  {entry['reason']}")
    if "engines" in rep:
        lines.append(f"engines ({rep['engines']['directory']}):")
        for name, status in rep["engines"]["status"].items() or [("bundle", "not found")]:
            lines.append(f"  {name:<12} {status}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rep = report(args.bundle)
    print(json.dumps(rep, indent=2) if args.json else format_text(rep))
    return 0
