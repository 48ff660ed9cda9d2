"""The runtime stays lean: importing it (and building the CLI) loads no torch/transformers."""

from __future__ import annotations

import subprocess
import sys

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


def test_runtime_sources_are_python310_compatible() -> None:
    import ast
    from pathlib import Path

    import segzero_edge

    root = Path(segzero_edge.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 10))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                mod = getattr(node, "module", None) or ""
                assert "tomllib" not in names and mod != "tomllib", path
                assert not (mod == "typing" and "Self" in names), path
                assert not (mod == "enum" and "StrEnum" in names), path
