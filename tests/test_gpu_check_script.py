"""``scripts/gpu_check.sh --dry-run``: the GPU check's own logic, on a machine without a GPU.

The dry run reads the (faked) GPU line, plans the wheel installs, makes the project importable
from a folder of symlinks with its entry points, and prints the commands the real run executes.
"""

from __future__ import annotations

import os
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
         "--out", str(tmp_path / "out"), *extra],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "GPU_CHECK_FAKE_GPU": gpu, **(env or {})},
    )  # fmt: skip


def test_gpu_check_dry_run_plans_the_build_tests_and_timings(tmp_path: Path) -> None:
    run = dry_run(tmp_path, "NVIDIA A100-SXM4-80GB, 8.0")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "compute capability 8.0 -> CMAKE_CUDA_ARCHITECTURES=80" in out
    assert "-DCMAKE_CUDA_ARCHITECTURES=80" in out and "-DSEGZERO_REQUIRE_CUDA=ON" in out
    assert "TensorRT: not installed on this machine" in out
    assert "tests/test_kernels_pixels.py" in out and "--junitxml=" in out
    assert "benchmarks/bench_kernels.py" in out
    # the symlinked project with a generated dist-info carries every CLI command
    commands = out.split("CLI commands: ")[1].split(")")[0].split()
    assert {"segment", "doctor", "export", "build-engines", "eval", "bench"} <= set(commands)
    summary = (tmp_path / "out" / "gpu_check_summary.txt").read_text()
    assert "dry run: OK" in summary and "sm_80" in summary


def test_gpu_check_plans_wheels_for_missing_modules(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("trl", "sam2"):  # modules this interpreter will pretend not to have
        (blocked / f"{module}.py").write_text("raise ImportError('blocked for the test')\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "trl-1.16.0-py3-none-any.whl").write_bytes(b"")
    env = {"PYTHONPATH": str(blocked)}
    run = dry_run(tmp_path, "NVIDIA H200, 9.0", "--wheels", str(wheels), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "python: installing sam2==1.1.0 trl==1.16.0" in run.stdout
    assert "wheels missing from" in run.stdout and "sam2==1.1.0" in run.stdout
    missing_line = next(ln for ln in run.stdout.splitlines() if "wheels missing" in ln)
    assert "trl" not in missing_line  # its wheel is in the folder
    assert "pip install -q --no-index --no-deps --find-links" in run.stdout


@pytest.mark.parametrize("line", ["NVIDIA H200, ", "NVIDIA H200, nine"])
def test_gpu_check_refuses_an_unreadable_gpu_line(tmp_path: Path, line: str) -> None:
    run = dry_run(tmp_path, line)
    assert run.returncode == 1
    assert "cannot read the compute capability" in run.stderr


def test_gpu_check_help_and_bad_option() -> None:
    help_run = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--fetch-wheels" in help_run.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
