"""Subcommands of the ``segzero-edge`` CLI.

The runtime defines ``segment``, ``track``, ``bag`` and ``doctor`` here. The other packages of the
distribution add theirs through the ``segzero_edge.commands`` entry-point group (``export`` and
``build-engines`` from ``segzero_export``, ``eval`` from ``segzero_train``, ``bench`` from
``segzero_bench``), so the runtime never imports them. An entry point names a
``register(subparsers)`` function that adds one sub-parser and sets ``func``; its module must
import nothing heavy at module level (``segzero-edge --help`` stays fast and torch-free).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "segzero_edge.commands"
BUILTIN = {
    "segment": "segment",
    "track": "track",
    "bag": "bag",
    "doctor": "doctor",
}  # command -> module

# a string: ``_SubParsersAction`` is generic only in typeshed, not at runtime
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def registered() -> dict[str, Register]:
    """Command name -> its ``register`` function: the built-in ones, then the entry points."""
    out: dict[str, Register] = {}
    for name, module in BUILTIN.items():
        out[name] = importlib.import_module(f"{__name__}.{module}").register
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name not in out:
            out[ep.name] = ep.load()
    return out
