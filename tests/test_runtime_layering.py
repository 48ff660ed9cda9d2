"""The runtime package's import graph: nothing from export/train/bench, and no cycles.

Every ``import`` in ``segzero_edge/`` (module level and inside functions) is read from the
source with ``ast``; relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import segzero_edge

pytestmark = pytest.mark.runtime

ROOT = Path(segzero_edge.__file__).parent
OTHER_PACKAGES = ("segzero_export", "segzero_train", "segzero_bench")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` -> a and a.b)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files} for m, p in files.items()}


def test_runtime_imports_nothing_from_export_train_or_bench() -> None:
    bad = {
        _module_name(p): sorted(i for i in _imports(p) if i.split(".")[0] in OTHER_PACKAGES)
        for p in ROOT.rglob("*.py")
    }
    bad = {m: v for m, v in bad.items() if v}
    assert bad == {}, f"runtime modules import non-runtime packages: {bad}"


def test_runtime_has_no_import_cycle() -> None:
    graph = _graph()
    # a package's __init__ importing its own submodules is not a cycle of the design: drop the
    # edge from a submodule to its parent package (Python runs the parent first anyway)
    for mod, deps in graph.items():
        deps.difference_update({d for d in deps if mod.startswith(d + ".")})
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layout_and_errors_are_leaves() -> None:
    graph = _graph()
    for leaf in ("segzero_edge.layout", "segzero_edge.errors", "segzero_edge._version"):
        assert graph[leaf] == set(), f"{leaf} imports {graph[leaf]}"


EXCEPTION_BASES = {"Exception", "BaseException", "ValueError", "RuntimeError", "OSError"}


def test_every_runtime_exception_lives_in_errors() -> None:
    """Each exception class of the runtime is defined in segzero_edge/errors.py; the modules
    that raised them before re-export the same class."""
    from segzero_edge import cli, errors, native, onnx_scan
    from segzero_edge.platform import cuda
    from segzero_edge.reasoner import llama_variants
    from segzero_edge.segmenter import trt_engine

    declared = {n for n in dir(errors) if isinstance(getattr(errors, n), type) and n[0].isupper()}
    elsewhere = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            is_error = bases & (EXCEPTION_BASES | declared) or node.name.endswith("Error")
            if is_error and path.name != "errors.py":
                elsewhere.append(f"{_module_name(path)}.{node.name}")
    assert elsewhere == [], f"exception classes outside errors.py: {elsewhere}"
    assert cli.Terminated is errors.Terminated and native.NativeError is errors.NativeError
    assert (
        cuda.CudaError is errors.CudaError and onnx_scan.OnnxFormatError is errors.OnnxFormatError
    )
    assert trt_engine.EngineLoadError is errors.EngineLoadError
    assert llama_variants.CpuVariantError is errors.CpuVariantError


def test_layout_names_have_no_second_name() -> None:
    """No runtime module gives a layout.py name a second name (``ENCODER = SAM2_ENCODER`` or
    ``import SAM2_ENCODER_FILE as ENCODER_ONNX``): one name per fact."""
    from segzero_edge import layout

    names = {n for n in dir(layout) if n.isupper()}
    allowed: set[str] = set()
    seconds = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Name)
                and node.value.id in names
            ):
                seconds += [
                    f"{_module_name(path)}.{t.id}"
                    for t in node.targets
                    if isinstance(t, ast.Name) and t.id not in allowed
                ]
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("layout"):
                seconds += [f"{_module_name(path)}.{a.asname}" for a in node.names if a.asname]
    assert seconds == [], f"second names for layout.py's names: {seconds}"
