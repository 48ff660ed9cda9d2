"""The llama.cpp CPU variant choice of a GGML_BACKEND_DL build (reasoner/llama_variants.py).

The modules scored here are real shared objects, compiled in the test, that export
``ggml_backend_score`` as ggml's variant modules do; the scan dlopens them as ggml does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from segzero_edge.reasoner import llama_variants as lv

pytestmark = pytest.mark.runtime


def _module(folder: Path, name: str, score: int | None) -> Path:
    src = folder / f"{name}.c"
    body = f"int ggml_backend_score(void) {{ return {score}; }}\n" if score is not None else ""
    src.write_text(body + "int unrelated_symbol(void) { return 1; }\n")
    out = folder / f"{lv.VARIANT_PREFIX}{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


@pytest.fixture
def variants_dir(tmp_path: Path) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to build the stand-in modules")
    for name, score in {
        "x64": 1,
        "haswell": 40,
        "icelake": 90,
        "sapphirerapids": 200,
        "zen9": 0,  # this CPU lacks its features
        "broken": None,  # no ggml_backend_score: not a ggml backend module
    }.items():
        _module(tmp_path, name, score)
    (tmp_path / "libggml-cpu-notes.txt").write_text("not a module")
    return tmp_path


def test_scan_reads_every_modules_score(variants_dir: Path) -> None:
    got = {c.name: c.score for c in lv.scan(variants_dir)}
    assert got == {
        "x64": 1,
        "haswell": 40,
        "icelake": 90,
        "sapphirerapids": 200,
        "zen9": 0,
        "broken": 0,
    }


def test_choose_skips_amx_unless_allowed(variants_dir: Path) -> None:
    cands = lv.scan(variants_dir)
    best, why = lv.choose(cands)
    assert best.name == "icelake"
    assert "sapphirerapids skipped" in why and "20824" in why
    best, why = lv.choose(cands, allow_amx=True)
    assert best.name == "sapphirerapids" and "skipped" not in why


def test_choose_by_name_and_its_errors(variants_dir: Path) -> None:
    cands = lv.scan(variants_dir)
    assert lv.choose(cands, wanted="haswell")[0].name == "haswell"
    with pytest.raises(lv.CpuVariantError, match=r"no such variant.*haswell"):
        lv.choose(cands, wanted="skylake")
    with pytest.raises(lv.CpuVariantError, match="lacks features"):
        lv.choose(cands, wanted="zen9")


def test_choose_refuses_when_nothing_runs(tmp_path: Path) -> None:
    cands = [lv.CpuVariant("zen9", tmp_path / "x.so", 0)]
    with pytest.raises(lv.CpuVariantError, match=r"no llama\.cpp CPU variant runs"):
        lv.choose(cands)


def test_only_amx_runs_is_used_rather_than_nothing(tmp_path: Path) -> None:
    cands = [lv.CpuVariant("sapphirerapids", tmp_path / "x.so", 5)]
    assert lv.choose(cands)[0].name == "sapphirerapids"


def test_linked_build_loads_nothing() -> None:
    """The installed llama-cpp-python (scripts/setup.sh's build) links its CPU backend in."""
    if lv.variant_files(*lv.variant_dirs()):
        pytest.skip("this llama-cpp-python is a GGML_BACKEND_DL build")
    assert lv.load_cpu_backend() is None
