"""The docs: the README's Python example runs as written, the generated pages (docs/api.md,
docs/cli.md) match the code, links between the pages resolve, and every ``SEGZERO_*``
environment variable the code reads is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))


def _python_example() -> str:
    text = README.read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


@pytest.mark.runtime
def test_readme_python_example_runs_as_written(tiny_bundle: Path) -> None:
    """The README's example, unchanged, in a fresh interpreter at the repository's root; the
    bundle comes from ``$SEGZERO_BUNDLE`` as on a machine where it is set (else
    ``default_bundle()`` would build the demo bundle, as the first command does)."""
    code = _python_example()
    assert len(code.strip().splitlines()) <= 12
    env = {**os.environ, "SEGZERO_BUNDLE": str(tiny_bundle)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[0].split()[0] in ("ok", "no_object", "unparseable", "truncated"), out
    assert "(480, 640)" in done.stdout  # the mask has the kitchen picture's size
    assert "'total'" in out[-1]


@pytest.mark.runtime
def test_links_between_pages_resolve() -> None:
    for page in [README, *PAGES]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path = (page.parent / target).resolve()
            rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
            assert path.exists(), f"{page.name}: {target} ({rel})"


def test_generated_pages_are_current() -> None:
    """docs/api.md and docs/cli.md are what scripts/gen_docs.py makes of the code now."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.runtime
def test_every_environment_variable_is_documented() -> None:
    """Each ``"SEGZERO_..."`` string of the code (not a Python name defined as one) and each
    ``$SEGZERO_...`` of the shell scripts has a row in docs/install.md."""
    sources = [p for d in ("segzero_edge", "export", "train", "benchmarks", "tests")
               for p in (ROOT / d).rglob("*.py")]  # fmt: skip
    text = "\n".join(p.read_text() for p in sources)
    names = set(re.findall(r"\"(SEGZERO_[A-Z0-9_]+)\"", text))
    names -= set(re.findall(r"^(SEGZERO_[A-Z0-9_]+)\s*=", text, re.M))  # Python constants
    shell = "\n".join(
        p.read_text() for p in [*(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run"]
    )
    names |= set(re.findall(r"\$\{?(SEGZERO_[A-Z0-9_]+)", shell))
    assert {"SEGZERO_BUNDLE", "SEGZERO_LOG_LEVEL", "SEGZERO_NATIVE_LIB"} <= names
    documented = set(
        re.findall(
            r"^\| `(SEGZERO_[A-Z0-9_]+)` \|", (ROOT / "docs" / "install.md").read_text(), re.M
        )
    )
    assert names <= documented, sorted(names - documented)


def test_readme_is_a_first_page() -> None:
    """The README keeps what a newcomer needs first; the rest lives in docs/."""
    text = README.read_text()
    assert len(text.splitlines()) <= 110
    for heading in ("## Quick start (two commands)", "## Install", "## Python"):
        assert heading in text
    for page in PAGES:
        assert f"docs/{page.name}" in text, page.name
