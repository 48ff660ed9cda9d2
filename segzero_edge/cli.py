"""``segzero-edge`` command line: ``segment`` and ``doctor`` here, the rest by entry point.

See :mod:`segzero_edge.commands` for how commands are found. Every error a user can fix is
one line on stderr and exit code 2; Ctrl+C exits 130.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .commands import registered
from .errors import BackendError, BundleError, CommandError, TensorRTUnavailable

USER_ERRORS = (
    CommandError,
    BundleError,
    BackendError,
    TensorRTUnavailable,
    FileNotFoundError,
    FileExistsError,
    ValueError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzero-edge",
        description="Seg-Zero reasoning segmentation on NVIDIA Jetson Orin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in registered().values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"segzero-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["CommandError", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
