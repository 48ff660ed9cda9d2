"""TensorRT bookkeeping of the memory engines without TensorRT: found only when current and
present, listed by ``doctor`` only for bundles that have them, their dynamic profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from segzero_edge.engine_cache import (
    BuildFlags,
    engine_status,
    find_engines,
    find_memory_engines,
    plan_path,
    read_meta,
    stale_reason,
)
from segzero_edge.fileio import sha256_file
from segzero_edge.layout import (
    SAM2_GRAPHS,
    SAM2_MEMORY_ATTENTION,
    SAM2_MEMORY_ENCODER,
    SAM2_MEMORY_GRAPHS,
)
from segzero_export.engines import EngineBuildError, input_profile
from tests.fixtures.engines import FP, TRT, fake_build, make_engine_bundle

pytestmark = pytest.mark.usefixtures("fixed_fingerprint")


def test_memory_engines_found_when_built(tmp_path: Path) -> None:
    bundle = make_engine_bundle(tmp_path / "b", (*SAM2_GRAPHS, *SAM2_MEMORY_GRAPHS))
    assert find_memory_engines(bundle) is None
    status = engine_status(bundle)
    assert set(status) == {*SAM2_GRAPHS, *SAM2_MEMORY_GRAPHS}
    assert "does not exist" in status[SAM2_MEMORY_ATTENTION]
    out = fake_build(bundle, (*SAM2_GRAPHS, *SAM2_MEMORY_GRAPHS))
    assert find_engines(bundle) is not None
    assert find_memory_engines(bundle) == (
        out / "sam2_memory_attention.plan",
        out / "sam2_memory_encoder.plan",
    )
    assert set(engine_status(bundle).values()) == {"ok"}
    (bundle / "sam2_memory_encoder.onnx").write_bytes(b"re-exported")
    assert find_memory_engines(bundle) is None and find_engines(bundle) is not None


def test_old_bundle_lists_no_memory_engines(tmp_path: Path) -> None:
    bundle = make_engine_bundle(tmp_path / "b", SAM2_GRAPHS)
    fake_build(bundle, SAM2_GRAPHS)
    assert set(engine_status(bundle)) == set(SAM2_GRAPHS)
    assert find_memory_engines(bundle) is None and find_engines(bundle) is not None


def test_memory_profiles_are_flags_of_the_attention_engine_only(tmp_path: Path) -> None:
    flags = BuildFlags()
    assert "memory_frames_profile" not in flags.to_json()  # encoder/decoder flags unchanged
    assert flags.to_json(SAM2_MEMORY_ATTENTION)["memory_frames_profile"] == [1, 7, 7]
    assert flags.to_json(SAM2_MEMORY_ATTENTION)["obj_ptrs_profile"] == [1, 16, 16]
    assert flags.to_json(SAM2_MEMORY_ENCODER) == flags.to_json()
    bundle = make_engine_bundle(tmp_path / "b", (*SAM2_GRAPHS, *SAM2_MEMORY_GRAPHS))
    out = fake_build(bundle, (*SAM2_GRAPHS, *SAM2_MEMORY_GRAPHS))
    bigger = BuildFlags(memory_frames_profile=(1, 7, 9))

    def why(name: str, f: BuildFlags) -> str | None:
        return stale_reason(
            name, read_meta(out), plan=plan_path(out, name),
            onnx_sha256=sha256_file(bundle / f"{name}.onnx"), tensorrt_version=TRT,
            fingerprint=FP, flags=f,
        )  # fmt: skip

    assert "build flags changed" in (why(SAM2_MEMORY_ATTENTION, bigger) or "")
    assert why("sam2_encoder", bigger) is None and why(SAM2_MEMORY_ENCODER, bigger) is None


def test_input_profiles() -> None:
    flags = BuildFlags()
    assert input_profile("memory", (-1, 64, 64, 64), flags) == (
        [1, 64, 64, 64],
        [7, 64, 64, 64],
        [7, 64, 64, 64],
    )
    assert input_profile("obj_ptr_tpos", (-1,), flags) == ([1], [16], [16])
    assert input_profile("point_coords", (1, -1, 2), flags)[2] == [1, 16, 2]
    with pytest.raises(EngineBuildError, match="only dimension 0"):
        input_profile("memory", (-1, -1, 64, 64), flags)
    with pytest.raises(EngineBuildError, match="only the prompt and point dimensions"):
        input_profile("image_embed", (-1, 256, 64, 64), flags)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        input_profile("obj_ptrs", (-1, 256), BuildFlags(obj_ptrs_profile=(4, 2, 16)))


def test_onnxruntime_tensorrt_ep_profiles_match_build_engines() -> None:
    """onnxruntime's TensorRT EP gets the memory attention profiles ``build-engines`` uses."""
    from segzero_edge.segmenter.memory_onnxruntime import memory_profile_options

    opts = memory_profile_options()
    assert opts["trt_profile_min_shapes"] == (
        "memory:1x64x64x64,memory_tpos:1,obj_ptrs:1x256,obj_ptr_tpos:1"
    )
    assert opts["trt_profile_max_shapes"] == (
        "memory:7x64x64x64,memory_tpos:7,obj_ptrs:16x256,obj_ptr_tpos:16"
    )
