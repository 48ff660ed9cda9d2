"""``segzero-edge doctor``: the device fingerprint, which backends can run here (and why not),
llama.cpp's CPU features and buffer types, and a child-process smoke test of each native library
the runtime loads (:mod:`segzero_edge.smoke`), so that a library that crashes is named instead of
taking the doctor down."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="report the device fingerprint and which backends are available (and why not)",
        description=(
            "Probe this machine: GPU and compute capability, TensorRT, CUDA (cuda-python), "
            "onnxruntime execution providers, llama.cpp GPU offload, CPU features and buffer "
            "types, and the native kernels. Each native library (llama.cpp + libmtmd, "
            "onnxruntime, libsegzero_kernels) is first smoke-tested in a child process; one "
            "that crashes is named with its signal. Each backend is listed with the reason it "
            "is or is not usable. With --bundle, the smoke tests also run the bundle's models "
            "and the report says whether the bundle has current TensorRT engines for this "
            "device. Exit status 1 when a smoke-test child died."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--bundle", type=Path, help="also run this bundle's models and check its engines"
    )
    p.add_argument(
        "--no-smoke", action="store_true", help="skip the child-process smoke tests (faster)"
    )
    p.set_defaults(func=run)


def _entry(available: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"available": bool(available), "reason": reason, **extra}


def check_tensorrt() -> dict[str, Any]:
    """TensorRT's version (also when too old to use) and whether the backend can run."""
    from ..device import tensorrt_version
    from ..segmenter.tensorrt import available

    version = tensorrt_version()[0]
    ok, why = available()
    if version and version not in why:
        why = f"TensorRT {version}: {why}"
    return _entry(ok, why, version=version)


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
    how = "" if gpu else " (CPU only"
    if not gpu:
        from ..device import jetson_info

        how += (
            ": on a Jetson install onnxruntime-gpu from NVIDIA's Jetson index, see docs/jetson.md)"
            if jetson_info() is not None
            else ")"
        )
    names = ", ".join(providers) or "none"
    return _entry(
        True, f"onnxruntime {ort.__version__}, providers: {names}{how}", providers=providers
    )


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


# backend check -> the smoke test that must survive before it runs in this process
SMOKE_OF = {"onnxruntime": "onnxruntime", "llama.cpp": "llama.cpp", "native": "kernels"}


def report(bundle: Path | None = None, *, smoke: bool = True) -> dict[str, Any]:
    """The doctor report as a dict: ``device``, ``smoke`` (library -> child-process result),
    ``llama_cpp`` (CPU features, buffer types) and ``backends`` (name -> available, reason)."""
    from ..device import device_info
    from ..smoke import LIBRARIES, run_smoke

    out: dict[str, Any] = {"device": device_info(), "smoke": {}, "backends": {}}
    if smoke:
        for lib in LIBRARIES:
            out["smoke"][lib] = run_smoke(lib, bundle if bundle and bundle.is_dir() else None)
    llama = out["smoke"].get("llama.cpp")
    if llama is not None and llama.ok:
        keys = ("system_info", "cpu_features", "amx", "extra_buffer_types", "use_extra_bufts",
                "use_extra_bufts_reason", "cpu_mismatch", "reasoner_info", "cpu_variant",
                "cpu_variant_reason", "cpu_variants")  # fmt: skip
        out["llama_cpp"] = {k: llama.details[k] for k in keys if k in llama.details}
    for name, check in CHECKS.items():
        child = out["smoke"].get(SMOKE_OF.get(name, ""))
        if child is not None and not child.ok:  # loading it here could kill this process
            out["backends"][name] = _entry(False, f"smoke test failed: {child.reason}")
            continue
        try:
            out["backends"][name] = check()
        except Exception as e:  # a probe must never take the report down
            out["backends"][name] = _entry(False, f"probe failed: {type(e).__name__}: {e}")
    out["smoke"] = {k: v.to_json() for k, v in out["smoke"].items()}
    if bundle is not None:
        from ..engine_cache import engine_dir, engine_folders

        folders = engine_folders(bundle) if bundle.is_dir() else []
        out["engines"] = {
            "directory": str(engine_dir(bundle)),
            "status": folders[0]["engines"] if folders else {},  # this device's, first
            "folders": folders,
        }
    return out


def _jetson_lines(dev: dict[str, Any]) -> list[str]:
    jetson, probe = dev.get("jetson"), dev.get("cuda_probe")
    if not jetson:
        return []
    name = jetson["module_name"] or "unknown module"
    sms = f", {jetson['sm_count']} SMs" if jetson["sm_count"] else ""
    lines = [f"Jetson module: {jetson['module'] or '?'} ({name}{sms}), SoC {jetson['soc']}"]
    if probe and probe.get("sm_count") and probe["sm_count"] != jetson["sm_count"]:
        lines.append(
            f"  note: CUDA reports {probe['sm_count']} SMs, the module table {jetson['sm_count']}"
        )
    return lines


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
        *_jetson_lines(dev),
        "backends:",
    ]
    for name, entry in rep["backends"].items():
        mark = "yes" if entry["available"] else "no "
        lines.append(f"  {name:<12} {mark}  {entry['reason']}")
    llama = rep.get("llama_cpp")
    if llama:
        bufts = llama["extra_buffer_types"]
        lines += [
            f"llama.cpp system info: {llama['system_info']}",
            "llama.cpp extra buffer types: "
            + (", ".join(bufts) or "none" if isinstance(bufts, list) else str(bufts))
            + f"; the reasoner uses them: {llama['use_extra_bufts_reason']}",
        ]
        if llama.get("cpu_variant"):
            n = len(llama.get("cpu_variants") or {})
            lines.append(
                f"llama.cpp CPU kernels: the {llama['cpu_variant']} variant of {n} "
                f"(GGML_BACKEND_DL build): {llama['cpu_variant_reason']}"
            )
        if llama.get("cpu_mismatch"):
            lines.append(f"llama.cpp CANNOT RUN on this CPU: {llama['cpu_mismatch']}")
        buffers = (llama.get("reasoner_info") or {}).get("model_buffers_mib")
        if buffers:
            where = ", ".join(f"{k} {v:.1f} MiB" for k, v in buffers.items())
            lines.append(f"llama.cpp model weights (bundle) in buffers: {where}")
    if rep.get("smoke"):
        lines.append("native libraries, smoke-tested in child processes:")
        for name, res in rep["smoke"].items():
            mark = "ok  " if res["ok"] else ("DIED" if res["died"] else "FAIL")
            lines.append(f"  {name:<12} {mark} {res['seconds']:5.1f} s  {res['reason']}")
    if "engines" in rep:
        folders = rep["engines"].get("folders", [])
        mine = next((f for f in folders if f["this_device"]), None)
        state = f": {mine['state']}" if mine else ""
        lines.append(f"engines for this device ({rep['engines']['directory']}){state}:")
        for name, status in rep["engines"]["status"].items() or [("bundle", "not found")]:
            lines.append(f"  {name:<12} {status}")
        others = [f for f in folders if not f["this_device"]]
        if others:
            lines.append("other engine folders (not used here):")
            for f in others:
                trt = (
                    f"TensorRT {f['tensorrt_version']}"
                    if f["tensorrt_version"]
                    else "no engines.json"
                )
                lines.append(f"  {f['folder']}  {trt}, {f['state']}")
    return "\n".join(lines)


def verdict(rep: dict[str, Any], bundle: Path | None = None) -> tuple[bool, str, str]:
    """``(ready, verdict, next step)`` of a :func:`report`: whether ``segment`` can run here
    (a reasoner backend, a SAM2 backend, every smoke test passed, the bundle's models ran),
    in words, and the command or fix to try next."""
    backends = rep["backends"]
    failed = [f"{name} ({res['reason']})" for name, res in rep["smoke"].items() if not res["ok"]]
    mismatch = (rep.get("llama_cpp") or {}).get("cpu_mismatch")
    if failed:
        return (
            False,
            f"NOT READY: smoke test failed for {'; '.join(failed)}",
            "reinstall the failing library for this CPU and Python (scripts/setup.sh runtime, "
            "or see docs/jetson.md on a Jetson), then run segzero-edge doctor again",
        )
    if mismatch:
        return (
            False,
            f"NOT READY: llama.cpp cannot run on this CPU ({mismatch})",
            "rebuild llama-cpp-python for this CPU (scripts/setup.sh; LLAMA_CMAKE_ARGS)",
        )
    unchecked = {"available": False, "reason": "not checked"}
    backends = {n: backends.get(n, unchecked) for n in ("llama.cpp", "tensorrt", "onnxruntime")}
    if not backends["llama.cpp"]["available"]:
        return (
            False,
            f"NOT READY: no reasoner backend ({backends['llama.cpp']['reason']})",
            "pip install 'segzero-edge[runtime]' (llama-cpp-python)",
        )
    segmenters = [n for n in ("tensorrt", "onnxruntime") if backends[n]["available"]]
    if not segmenters:
        return (
            False,
            f"NOT READY: no SAM2 backend ({backends['onnxruntime']['reason']})",
            "pip install 'segzero-edge[runtime]' (onnxruntime; on a Jetson NVIDIA's "
            "onnxruntime-gpu, see docs/jetson.md)",
        )
    where = f"reasoner on llama.cpp, SAM2 on {' or '.join(segmenters)}"
    if bundle is None:
        return (
            True,
            f"READY: segment can run here ({where})",
            "segzero-edge doctor --bundle BUNDLE (runs a bundle's models here), or "
            'segzero-edge segment IMAGE "QUERY" --bundle BUNDLE',
        )
    engines = rep.get("engines", {})
    mine = next((f for f in engines.get("folders", []) if f["this_device"]), None)
    current = mine is not None and mine["state"] == "current"
    if backends["tensorrt"]["available"] and not current:
        return (
            True,
            f"READY with onnxruntime: {bundle} has no current TensorRT engines for this device",
            f"segzero-edge build-engines {bundle} (then SAM2 runs on TensorRT)",
        )
    return (
        True,
        f"READY: {bundle} runs here ({where})",
        f'segzero-edge segment IMAGE "QUERY" --bundle {bundle}',
    )


def run(args: argparse.Namespace) -> int:
    rep = report(args.bundle, smoke=not args.no_smoke)
    ready, said, step = verdict(rep, args.bundle)
    if args.json:
        print(
            json.dumps(
                {**rep, "verdict": {"ready": ready, "verdict": said, "next": step}}, indent=2
            )
        )
    else:
        print(f"{format_text(rep)}\nverdict: {said}\nnext: {step}")
    return 1 if any(r["died"] for r in rep["smoke"].values()) else 0
