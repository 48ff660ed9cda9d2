"""Shared pytest setup: GPU skipping and the per-area fixture plugins in tests/fixtures/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (reproducible CI); set
# HYPOTHESIS_PROFILE=explore to draw new ones, as when hunting for a counterexample.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


def _gpu_reason() -> str | None:
    if Path("/etc/nv_tegra_release").is_file():  # Jetson: the integrated GPU is always there
        return None
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi not found); run `pytest -m gpu` on a GPU host"
    try:
        subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError) as e:
        return f"nvidia-smi failed ({e}); no usable GPU"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _gpu_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt), as in an interactive interpreter, for
    the tests that press Ctrl+C with ``_thread.interrupt_main()``: that call does nothing when
    SIGINT is ignored or left to the OS, which a library loaded by an earlier test may do."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
