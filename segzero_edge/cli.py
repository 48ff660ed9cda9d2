"""``segzero-edge`` command line: one module per subcommand under ``segzero_edge.commands``.

Each command module defines ``register(subparsers)`` and keeps heavy imports inside the
function it runs, so ``segzero-edge --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

COMMANDS = [
    "segment",
    "export",
    "bench",
    "build_engines",
    "doctor",
    "eval",
]


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzero-edge",
        description="Seg-Zero reasoning segmentation on NVIDIA Jetson Orin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"segzero-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
