"""The runtime stays lean: importing it (and building the CLI) loads no torch/transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime

HEAVY = ("torch", "transformers", "torchvision", "sam2", "onnx", "trl")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_segzero_edge_loads_no_heavy_module() -> None:
    assert _loaded_after("import segzero_edge") == []


def test_cli_parser_loads_no_heavy_module() -> None:
    assert _loaded_after("from segzero_edge.cli import build_parser; build_parser()") == []


VERMIN = [
    "-c",
    "import sys, vermin; sys.exit(vermin.main())",
    "-t=3.10-",
    "--violations",
    "--eval-annotations",
    "--no-tips",
    "-q",
]
"""vermin (pinned in the dev extra) checks every runtime source against Python 3.10: syntax,
standard-library modules and members (``tomllib``, ``typing.Self``, ``enum.StrEnum``, ...)."""


def test_runtime_sources_are_python310_compatible(tmp_path: Path) -> None:
    """The runtime runs on JetPack 6's Python 3.10. CI also runs the runtime tests on 3.10,
    but only the modules they import; vermin reads every file. (The 3.10 venv has no vermin:
    there the test is skipped and the 3.10 run itself is the check.)"""
    pytest.importorskip("vermin", reason="vermin is in the dev extra")
    import segzero_edge

    root = Path(segzero_edge.__file__).parent
    done = subprocess.run([sys.executable, *VERMIN, str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # the check itself finds what it must (a broken invocation would pass everything)
    (tmp_path / "new.py").write_text("import tomllib\nfrom typing import Self\n")
    bad = subprocess.run([sys.executable, *VERMIN, str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "tomllib" in bad.stdout and "typing.Self" in bad.stdout
