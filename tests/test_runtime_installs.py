"""Installs that fit: a command whose extra is missing stops with one line naming the extra,
and ``bench --side runtime --bundle B`` runs on the runtime alone.

The tests are marked ``runtime``: CI also runs them in its Python 3.10 venv that holds the
runtime only (no torch, OpenCV, gguf or matplotlib), where the modules are really absent.
Here (the dev venv) the same modules are hidden from the child process: ``sys.modules[name] =
None`` makes ``import name`` raise ``ModuleNotFoundError`` as when it is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = (
    "import sys\n"
    "for name in filter(None, sys.argv[1].split(',')):\n"
    "    sys.modules[name] = None  # import raises ModuleNotFoundError, as when not installed\n"
    "from segzero_edge.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def cli_without(hidden: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``segzero-edge ARGV`` in a child process where the modules ``hidden`` (comma-separated)
    cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK, hidden, *argv],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.runtime
def test_export_without_torch_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """On a runtime-only install (CI's Python 3.10 venv) torch is absent; here it is hidden."""
    done = cli_without("torch", "export", "--tiny", "-o", str(tmp_path / "b"))
    one_line(done, "[export] extra", "pip install 'segzero-edge[export]'")
    assert not (tmp_path / "b").exists()


@pytest.mark.runtime
def test_eval_bundle_without_opencv_names_the_eval_extra(tiny_bundle: Path, tmp_path: Path) -> None:
    """``eval --bundle`` on examples/ (kitchen.png + its ReasonSeg JSON): the model runs, then
    drawing the ground-truth polygon needs OpenCV, which the [eval] extra brings."""
    report = tmp_path / "report.json"
    argv = ["eval", "--bundle", str(tiny_bundle), "--data", str(ROOT / "examples"),
            "--out", str(report), "--max-new-tokens", "8", "-q"]  # fmt: skip
    one_line(cli_without("cv2", *argv), "segzero-edge eval needs the [eval] extra",
             "(cv2 is not installed)", "pip install 'segzero-edge[eval]'")  # fmt: skip
    assert not report.exists()


@pytest.mark.runtime
def test_bench_runtime_side_on_a_bundle_needs_only_the_runtime(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """No torch, gguf, matplotlib or psutil: the runtime side is measured and the JSON written;
    the roofline, memory estimate and plot are skipped with a line naming [bench]."""
    argv = ["bench", "--side", "runtime", "--bundle", str(tiny_bundle), "--iters", "1",
            "--warmup", "0", "--decode-tokens", "4", "--workload", "single",
            "--no-overlap-check", "--threads", "2", "--out", str(tmp_path)]  # fmt: skip
    done = cli_without("torch,gguf,matplotlib,psutil,transformers", *argv)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "no roofline and no memory estimate" in done.stdout
    assert "pip install 'segzero-edge[bench]'" in done.stdout
    (path,) = tmp_path.glob("bench-*.json")
    (case,) = json.loads(path.read_text())["cases"]
    assert case["runtime"]["timed"] == "SegZeroEdge.segment"
    assert case["runtime"]["workloads"]["single"]["stats"]["total"]["n"] == 1
    assert "roofline" not in case and "memory" not in case
