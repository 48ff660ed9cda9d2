"""Portability of the native parts the runtime loads (runs on the Python 3.10 runtime venv too).

- The llama.cpp this project builds states its CPU baseline: on x86-64 it reports AVX2 and no
  AVX-512 or AMX in ``llama_print_system_info()``, offers no AMX buffer type, and its CPU
  library holds no AVX-512/AMX instructions (llama.cpp's AMX kernels crash on some CPUs,
  llama.cpp issue 20824; AVX-512 code would raise SIGILL on CPUs without it).
- The reasoner turns llama.cpp's extra buffer types off where llama.cpp reports AMX, unless
  forced, and records the choice and where the weights went.
- The native kernels came with the install (pip built them).
- A native crash in a child process is a named test failure (tests/child.py).
"""

from __future__ import annotations

import ctypes
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_edge import native
from segzero_edge.reasoner import llama_system
from tests.child import run_in_child

pytestmark = pytest.mark.runtime

EXPECTED_MARCH = {"x86_64": "x86-64-v3", "aarch64": "armv8.2-a"}


def test_parse_system_info_of_several_backends() -> None:
    text = "CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 | CUDA : ARCHS = 870 | FA = 1 | "
    got = llama_system.parse_system_info(text)
    assert got == {
        "CPU": {"SSE3": "1", "AVX2": "1", "AMX_INT8": "1", "REPACK": "1"},
        "CUDA": {"ARCHS": "870", "FA": "1"},
    }
    assert llama_system.amx_features(got["CPU"]) == ["AMX_INT8"]
    assert llama_system.parse_system_info("") == {}


def test_installed_llama_cpp_has_the_stated_cpu_baseline() -> None:
    """What llama.cpp itself reports about the build: x86-64 gets AVX2/FMA/F16C, no AVX-512,
    no AMX (and so no AMX buffer type); the CPU library has no zmm/tmm instructions."""
    info = llama_system.system_info()
    features = llama_system.cpu_features()
    bufts = llama_system.extra_buffer_types()
    print(f"\nllama_print_system_info(): {info}\nextra buffer types: {bufts}")
    assert features, f"no CPU features in {info!r}"
    assert "AMX" not in bufts
    if platform.machine() != "x86_64":
        pytest.skip("the x86-64 baseline checks apply to x86-64 builds")
    assert llama_system.amx_features(features) == [], info
    assert not [k for k in features if k.startswith("AVX512")], info
    for k in ("AVX2", "FMA", "F16C"):
        assert features.get(k) == "1", f"{k} missing from {info}"
    assert llama_system.decide_extra_bufts(None, features)[0] is True
    if shutil.which("objdump") is None:
        return
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"
    asm = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True)
    assert asm.returncode == 0, asm.stderr
    wide = [ln for ln in asm.stdout.splitlines() if re.search(r"%zmm|%tmm|tdpb|ldtilecfg", ln)]
    assert not wide, f"AVX-512/AMX instructions in {lib}: {wide[:3]}"


def test_extra_bufts_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(llama_system.ENV_EXTRA_BUFTS, raising=False)
    amx = {"AVX2": "1", "AMX_INT8": "1", "AMX_TILE": "1"}
    use, why = llama_system.decide_extra_bufts(None, amx)
    assert use is False and "AMX_INT8, AMX_TILE" in why and "20824" in why
    assert llama_system.decide_extra_bufts(True, amx) == (True, "forced on (extra_bufts=)")
    assert llama_system.decide_extra_bufts(None, {"AVX2": "1", "AMX_INT8": "0"})[0] is True
    monkeypatch.setenv(llama_system.ENV_EXTRA_BUFTS, "1")
    assert llama_system.decide_extra_bufts(None, amx)[0] is True
    monkeypatch.setenv(llama_system.ENV_EXTRA_BUFTS, "0")
    use, why = llama_system.decide_extra_bufts(None, {"AVX2": "1"})
    assert use is False and llama_system.ENV_EXTRA_BUFTS in why
    assert llama_system.decide_extra_bufts(True, {})[0] is True  # the argument wins
    monkeypatch.setenv(llama_system.ENV_EXTRA_BUFTS, "maybe")
    with pytest.raises(ValueError, match="SEGZERO_LLAMA_EXTRA_BUFTS"):
        llama_system.decide_extra_bufts(None, {})


def _load_info(bundle: Path, extra_bufts: bool | None, report_amx: bool) -> dict[str, Any]:
    """Child: load the bundle's reasoner (llama.cpp reporting AMX when ``report_amx``) and
    return its ``info``."""
    from segzero_edge.reasoner import llama_cpp as backend

    if report_amx:  # an AMX build on an AMX CPU: llama.cpp reports "AMX_INT8 = 1"
        from segzero_edge import cpu

        real, flags = llama_system.cpu_features(), cpu.cpu_flags()
        llama_system.cpu_features = lambda: {**real, "AMX_INT8": "1"}  # type: ignore[assignment]
        cpu.cpu_flags = lambda: flags | {"amx_int8", "amx_tile"}  # type: ignore[assignment]
    r = backend.LlamaCppReasoner(
        bundle / "reasoner.gguf", bundle / "mmproj.gguf", n_ctx=2048, n_gpu_layers=0,
        n_threads=2, warmup=False, extra_bufts=extra_bufts,
    )  # fmt: skip
    try:
        return r.info
    finally:
        r.close()


def test_reasoner_turns_extra_bufts_off_where_amx_is_reported(tiny_bundle: Path) -> None:
    cases = {(None, False): True, (None, True): False, (True, True): True, (False, False): False}
    repack = "CPU_REPACK" in llama_system.extra_buffer_types()
    for (extra, amx), expect in cases.items():
        info = run_in_child(_load_info, tiny_bundle, extra, amx)
        why, buffers = info["use_extra_bufts_reason"], info["model_buffers_mib"]
        print(f"extra_bufts={extra} AMX={amx}: {info['use_extra_bufts']} ({why}); {buffers}")
        assert info["use_extra_bufts"] is expect
        assert info["model_buffers_mib"], "no 'model buffer size' line in llama.cpp's log"
        if not expect:
            assert not [b for b in info["model_buffers_mib"] if "REPACK" in b or "AMX" in b]
        elif repack and platform.machine() == "x86_64":  # Q4_K is repacked for AVX2
            assert "CPU_REPACK" in info["model_buffers_mib"]


def _from_bundle_info(bundle: Path) -> dict[str, Any]:
    from segzero_edge import SegZeroEdge

    with SegZeroEdge.from_bundle(bundle, extra_bufts=False, n_gpu_layers=0) as model:
        return dict(model.reasoner.info)  # type: ignore[attr-defined]


def test_from_bundle_passes_extra_bufts_to_the_reasoner(tiny_bundle: Path) -> None:
    info = run_in_child(_from_bundle_info, tiny_bundle)
    assert info["use_extra_bufts"] is False and info["use_extra_bufts_reason"].startswith("forced")


def test_native_kernels_came_with_the_install() -> None:
    ok, why = native.available()
    print(f"native: {why}")
    assert ok, why
    info = native.build_info()
    assert info is not None and "cuda=" in info
    march = EXPECTED_MARCH.get(platform.machine())
    if march:
        assert info.startswith(f"march={march} "), info


def _segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV inside native code (libc's strlen)


def _raise() -> None:
    raise KeyError("from the child")


def test_run_in_child_turns_a_signal_into_a_named_failure() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"_segfault crashed.*SIGSEGV \(signal 11\)"):
        run_in_child(_segfault)
    with pytest.raises(KeyError, match="from the child"):
        run_in_child(_raise)
    assert run_in_child(divmod, 7, 2) == (3, 1)


def test_onnxruntime_tensorrt_ep_gets_fp16_caches_and_the_decoder_profile(tmp_path: Path) -> None:
    """onnxruntime's TensorRT execution provider (Jetson): FP16 with LayerNorms in FP32, engine
    and timing caches in the bundle's engine folder of this device (no rebuild at every start),
    and the decoder profile of build-engines: prompts (batch) 1..16, so an answer of two or more
    objects decodes in one call, and points 1..16. (No TensorRT EP here: the options are parsed
    and checked.)"""
    from segzero_edge.engine_cache import POINTS_PROFILE, PROMPTS_PROFILE
    from segzero_edge.segmenter.onnxruntime import parse_profile_shapes, tensorrt_provider_options

    enc = tensorrt_provider_options(tmp_path)
    dec = tensorrt_provider_options(tmp_path, decoder=True)
    for opts in (enc, dec):
        assert opts["trt_fp16_enable"] is True and opts["trt_engine_cache_enable"] is True
        assert opts["trt_layer_norm_fp32_fallback"] is True
        assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path)
        assert opts["trt_timing_cache_enable"] is True
    assert not [k for k in enc if k.startswith("trt_profile")]
    profile = {
        w: parse_profile_shapes(dec[f"trt_profile_{w}_shapes"]) for w in ("min", "opt", "max")
    }
    for k, which in enumerate(("min", "opt", "max")):
        b, n = PROMPTS_PROFILE[k], POINTS_PROFILE[k]
        assert profile[which] == {"point_coords": (b, n, 2), "point_labels": (b, n)}
    # what backend_decoder sends for an answer of 2 objects (box corners + 1 point each)
    # and of 16 objects (from_bundle(max_objects=16)) lies inside the profile
    for batch in ((2, 3, 2), (16, 3, 2)):
        lo, hi = profile["min"]["point_coords"], profile["max"]["point_coords"]
        assert all(a <= d <= c for a, d, c in zip(lo, batch, hi, strict=True)), (batch, hi)
    assert profile["max"]["point_coords"][0] > 1
    legacy = tensorrt_provider_options(tmp_path, decoder=True, prompts_profile=(1, 1, 1))
    assert parse_profile_shapes(legacy["trt_profile_max_shapes"])["point_labels"] == (1, 16)
    fp32 = tensorrt_provider_options(tmp_path, fp16=False)
    assert fp32["trt_fp16_enable"] is False and fp32["trt_layer_norm_fp32_fallback"] is False
    with pytest.raises(ValueError, match="prompts profile must satisfy"):
        tensorrt_provider_options(tmp_path, decoder=True, prompts_profile=(2, 1, 16))
    for bad in ("point_coords", "point_coords:2xAx2", "point_coords:0x3x2", ":1x2"):
        with pytest.raises(ValueError, match="malformed TensorRT profile shape"):
            parse_profile_shapes(bad)


def test_jetson_extra_pins_cuda_python_12() -> None:
    """JetPack 6 has a CUDA 12 driver; cuda-python 13 would make the TensorRT backend report
    itself unavailable. The installed package's metadata carries the pin."""
    import importlib.metadata

    reqs = importlib.metadata.requires("segzero-edge") or []
    jetson = [r.replace(" ", "") for r in reqs if 'extra=="jetson"' in r.replace(" ", "")]
    assert any(r.startswith("cuda-python") and "<13" in r and ">=12.6" in r for r in jetson), reqs


def test_auto_segmenter_says_why_built_engines_are_not_used(
    bundle_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Engines built under another fingerprint (e.g. 'cpu-aarch64' by a build-engines that
    could not see the GPU) are not silently ignored: auto falls back with a warning."""
    from segzero_edge.segmenter.auto import open_segmenter

    other = bundle_copy / "engines" / "cpu-aarch64-trt10.3.0-l4t36.4.0"
    other.mkdir(parents=True)
    (other / "sam2_encoder.plan").write_bytes(b"plan")
    seg = open_segmenter(bundle_copy, backend="auto", providers=["CPUExecutionProvider"])
    seg.close()
    assert seg.name == "onnxruntime-cpu"
    assert "cpu-aarch64-trt10.3.0-l4t36.4.0" in caplog.text and "not used" in caplog.text


X86_SSE4_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 pni ssse3 sse4_1 sse4_2 popcnt\n"
CORTEX_A57 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
ORIN_A78AE = (
    "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
)


def test_cpu_flags_against_the_builds() -> None:
    """A build for a newer instruction set than the CPU would die with SIGILL: the kernels
    are not loaded (numpy is used) and the reasoner refuses to load, each saying why."""
    from segzero_edge import cpu

    old_x86 = cpu.parse_cpuinfo(X86_SSE4_ONLY)
    assert {"pni", "sse4_2"} <= old_x86
    assert cpu.missing_for_march("x86-64-v3", old_x86) == [
        "abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe",
    ]  # fmt: skip
    reason = native.cpu_mismatch("march=x86-64-v3 cuda=off", old_x86)
    assert reason is not None and "lacks abm, avx, avx2" in reason
    llama_x86 = {"SSE3": "1", "AVX": "1", "AVX2": "1", "FMA": "1", "F16C": "1", "REPACK": "1"}
    assert cpu.missing_llama_features(llama_x86, old_x86) == ["AVX", "AVX2", "F16C", "FMA"]
    assert cpu.missing_for_march("armv8.2-a", cpu.parse_cpuinfo(CORTEX_A57)) == ["atomics"]
    orin = cpu.parse_cpuinfo(ORIN_A78AE)
    assert cpu.missing_for_march("armv8.2-a", orin) == []
    llama_arm = {"NEON": "1", "ARM_FMA": "1", "FP16_VA": "1", "DOTPROD": "1", "REPACK": "1"}
    assert cpu.missing_llama_features(llama_arm, orin) == []
    assert cpu.missing_for_march("x86-64-v3", frozenset()) == []  # unreadable: no verdict
    # this machine runs what it built
    assert native.cpu_mismatch(native.build_info() or "") is None
    assert llama_system.cpu_mismatch() is None


def test_kernels_built_for_a_newer_cpu_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from segzero_edge import cpu, pixels

    if not (native.build_info() or "").startswith("march=x86-64-v3"):
        pytest.skip("the installed kernels are not an x86-64-v3 build")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: cpu.parse_cpuinfo(X86_SSE4_ONLY))
    monkeypatch.setattr(native, "_STATE", {})  # load again under the patched CPU flags
    try:
        ok, why = native.available()
        assert not ok and "not used: built for -march=x86-64-v3" in why, why
        rgb = np.zeros((30, 40, 3), np.uint8)
        assert pixels.preprocess_reasoner(rgb).shape == (840, 840, 3)  # numpy fallback
    finally:
        monkeypatch.undo()
        assert native.available()[0]
