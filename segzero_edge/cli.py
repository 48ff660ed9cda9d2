"""``segzero-edge`` CLI: ``segment``, ``track``, ``bag``, ``doctor`` here, the rest by entry point.

See :mod:`segzero_edge.commands` for how commands are found. Every subcommand takes ``-v`` /
``-q`` (one parent parser, :data:`LOG_FLAGS`): the log level of :mod:`segzero_edge.logs`, one
step each, and ``-q`` also hides progress bars. Results go to stdout, the log to stderr.
Every error is one line on stderr and exit code 2 (set ``SEGZERO_EDGE_DEBUG=1`` for the
traceback of an unexpected one); Ctrl+C exits 130 and SIGTERM 143, after the same clean-up
(temporary folders are removed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from . import logs
from ._version import __version__
from .commands import registered
from .errors import (
    BackendError,
    BundleError,
    CommandError,
    TensorRTUnavailable,
    Terminated,
    missing_extra,
)

DEBUG_ENV = "SEGZERO_EDGE_DEBUG"
EXIT_ERROR, EXIT_INTERRUPT, EXIT_TERMINATED = 2, 130, 128 + signal.SIGTERM

USER_ERRORS = (
    CommandError,
    BundleError,
    BackendError,
    TensorRTUnavailable,
    OSError,  # FileNotFoundError, FileExistsError, disk full, read-only, permissions, ...
    ValueError,
)


def _log_flags() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("log")
    group.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more log on stderr: -v INFO (e.g. what was loaded, on which device), -vv DEBUG",
    )  # fmt: skip
    group.add_argument(
        "-q", "--quiet", action="count", default=0,
        help=f"less: -q warnings and errors only, no progress bars; -qq errors only "
        f"(${logs.LOG_LEVEL_ENV} sets the starting level)",
    )  # fmt: skip
    return parent


LOG_FLAGS = _log_flags()
"""The parent parser of every subcommand: ``-v/--verbose`` and ``-q/--quiet`` (counts)."""


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-parsers that all take :data:`LOG_FLAGS` (also those other packages register)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), LOG_FLAGS]
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzero-edge",
        description="Seg-Zero reasoning segmentation on NVIDIA Jetson Orin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.register("action", "parsers", _Subcommands)
    parser.set_defaults(log_default=logging.WARNING)  # long builds set INFO on their subparser
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in registered().values():
        register(sub)
    return parser


@contextlib.contextmanager
def _sigterm_cleans_up() -> Iterator[threading.Event]:
    """While the command runs, SIGTERM raises :class:`Terminated` (as SIGINT raises
    KeyboardInterrupt) instead of killing the process before clean-up; a handler someone
    else installed is left alone.

    The yielded event is set once SIGTERM arrived: a library that catches the raised
    :class:`Terminated` inside its own code and raises something else (torch turns it into a
    ``ValueError`` while it reads a sequence) must not turn a kill into a user error.
    """
    received = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield received
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        received.set()
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (multi-line messages joined with "; ")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def _flush_stdout() -> OSError | None:
    """Flush stdout; when that fails (disk full, closed pipe), point it at /dev/null so the
    interpreter's own flush at exit does not print a traceback, and return the error."""
    try:
        sys.stdout.flush()
    except OSError as e:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return e
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"segzero-edge {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR

    try:
        verbosity = args.verbose - args.quiet  # every subcommand has LOG_FLAGS
        logs.configure(verbosity, args.log_default)
    except ValueError as e:
        return fail(str(e))
    with _sigterm_cleans_up() as terminated:

        def fail_unless_terminated(message: str) -> int:
            # a library may catch the raised Terminated and raise an error of its own
            return EXIT_TERMINATED if terminated.is_set() else fail(message)

        code = _run(args, fail_unless_terminated, terminated)
        return EXIT_TERMINATED if terminated.is_set() else code


def _run(args: argparse.Namespace, fail: Callable[[str], int], terminated: threading.Event) -> int:
    """Run the chosen command; every way it can end becomes an exit code (module docstring).
    ``terminated``: set once SIGTERM arrived (no traceback then, even with the debug switch)."""
    debug = bool(os.environ.get(DEBUG_ENV))
    try:
        code = int(args.func(args) or 0)
        stuck = _flush_stdout()  # a full disk behind stdout is an error of this command
        return fail(f"cannot write the output: {one_line(stuck)}") if stuck else code
    except USER_ERRORS as e:
        _flush_stdout()
        return fail(one_line(e))
    except ImportError as e:  # an optional dependency: name the extra that brings it
        if debug and not terminated.is_set():
            raise
        if (extra := missing_extra(e, args.command)) is None:
            return fail(f"{one_line(e)} (set {DEBUG_ENV}=1 for the traceback)")
        return fail(str(extra))
    except KeyboardInterrupt:
        return EXIT_INTERRUPT
    except Terminated:
        return EXIT_TERMINATED
    except Exception as e:
        if debug and not terminated.is_set():
            raise
        return fail(
            f"unexpected {type(e).__name__}: {one_line(e)} (set {DEBUG_ENV}=1 for the traceback)"
        )


__all__ = ["CommandError", "Terminated", "build_parser", "main", "one_line"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
