"""``scripts/gpu_check.sh --dry-run``: the GPU check's own logic, on a machine without a GPU.

The dry run reads the (faked) GPU line, decides which carried wheels to install, makes the
project importable from a scratch folder of symlinks with its entry points, and prints the
commands the real run executes: the csrc/ build for that architecture, the ``-m gpu`` tests
only, the kernel timings; it writes only plain files directly under the output folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def dry_run(
    tmp_path: Path, gpu: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--python", sys.executable,
         "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), *extra],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "GPU_CHECK_FAKE_GPU": gpu, **(env or {})},
    )  # fmt: skip


def test_gpu_check_dry_run_plans_the_build_the_gpu_tests_and_timings(tmp_path: Path) -> None:
    run = dry_run(tmp_path, "NVIDIA H100 80GB HBM3, 9.0")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "compute capability 9.0 -> CMAKE_CUDA_ARCHITECTURES=90" in out
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in out and "-DSEGZERO_REQUIRE_CUDA=ON" in out
    # the build tree is scratch, never under the output folder (files from there come back)
    build_line = next(ln for ln in out.splitlines() if ln.startswith("would run: cmake -S"))
    assert f"-B {tmp_path / 'work' / 'build'}" in build_line
    assert "TensorRT backend: " in out and "onnxruntime: " in out
    pytest_line = next(ln for ln in out.splitlines() if " -m pytest " in ln)
    assert " -m gpu " in pytest_line and "--junitxml=" in pytest_line
    planned = {Path(p).name for p in pytest_line.split() if p.startswith("tests/")}
    mark = re.compile(r"^(pytestmark = .*pytest\.mark\.gpu\b|@pytest\.mark\.gpu\b)", re.M)
    gpu_files = {p.name for p in (ROOT / "tests").glob("test_*.py") if mark.search(p.read_text())}
    assert planned == gpu_files  # every file with GPU tests, and only those
    assert {"test_kernels_cuda_pixels_gpu.py", "test_segmenter_ort_cuda_gpu.py",
            "test_train_grpo_gpu.py", "test_kernels_pixels.py"} <= planned  # fmt: skip
    assert "benchmarks/bench_kernels.py" in out
    commands = out.split("CLI commands: ")[1].split(")")[0].split()
    assert {"segment", "doctor", "export", "build-engines", "eval", "bench"} <= set(commands)
    # at most a few plain files directly under $OUT: only the log exists after a dry run
    files = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    assert files == [Path("gpu_check.log")]
    assert "dry run: OK" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_gpu_check_installs_carried_wheels_for_missing_packages(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("trl", "datasets"):  # modules this interpreter will pretend not to have
        (blocked / f"{module}.py").write_text("raise ImportError('blocked for the test')\n")
    carry = tmp_path / "carry"
    (carry / "wheels").mkdir(parents=True)
    (carry / "wheels" / "trl-1.16.0-py3-none-any.whl").write_bytes(b"")
    env = {"PYTHONPATH": str(blocked)}
    run = dry_run(tmp_path, "NVIDIA H100 80GB HBM3, 9.0", "--carry", str(carry), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    missing = next(ln for ln in out.splitlines() if "not carried" in ln)
    assert "datasets==5.2.0" in missing and "trl" not in missing  # its wheel was carried
    assert "--prepare" in missing and "skip" in missing
    install = next(ln for ln in out.splitlines() if "pip install" in ln)
    assert "--no-index --no-deps" in install and "trl-1.16.0-py3-none-any.whl" in install
    assert f"--target {tmp_path / 'work' / 'wheels-site'}" in install


@pytest.mark.parametrize("line", ["NVIDIA H100, ", "NVIDIA H100, nine"])
def test_gpu_check_refuses_an_unreadable_gpu_line(tmp_path: Path, line: str) -> None:
    run = dry_run(tmp_path, line)
    assert run.returncode == 1
    assert "cannot read the compute capability" in run.stderr


def test_gpu_check_help_and_bad_option() -> None:
    help_run = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--prepare" in help_run.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def test_gpu_check_carry_folder_is_git_ignored() -> None:
    """``--prepare`` fills .gpu-carry/, which travels only when named in ``carry``."""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".gpu-carry"], cwd=ROOT, capture_output=True
    )
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0
