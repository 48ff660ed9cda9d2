"""The process's one llama.cpp / ggml / libmtmd log sink, and Ctrl+C during a llama.cpp call.

Every llama.cpp, ggml and libmtmd log line of the process goes to :data:`LOG_SINK`: the reasoner
reads its load errors from it and :func:`capture_log` (used by the exporter's quantizer)
collects lines from it, so neither replaces the other's callback (``llama_log_set``,
``mtmd_log_set`` and ``mtmd_helper_log_set`` each hold one callback per process).

A Ctrl+C while llama.cpp runs is raised in the first Python code that runs next, which is the
log callback, often at its very first line; ctypes then prints and drops it ("Exception ignored
on calling ctypes callback") and the C call goes on. The sink notes it instead (inside the
callback: ``except``; at its first line: :func:`unraisable_hook`, which ctypes calls) and
:meth:`LogSink.raise_interrupt` raises it once the C call has returned; :func:`interruptible`
does that on the way out of a block.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Iterator
from typing import Any

LOG_LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warn", 4: "error", 5: "cont"}
"""ggml_log_level values (ggml.h; the comment in llama_cpp/_logger.py predates a renumbering)."""
WARN, ERROR, CONT = 3, 4, 5


class LogSink:
    """Collects llama.cpp / libmtmd log lines; prints them to stderr when ``verbose``.

    Error lines go into the messages of the exceptions raised (one line on the command line);
    :func:`capture_log` blocks get a copy of each line. A KeyboardInterrupt raised inside the
    callback is noted in :attr:`interrupted` (see the module docstring).
    """

    def __init__(self) -> None:
        self.verbose = False
        self.interrupted = False
        self.captures: list[list[tuple[str, str]]] = []
        self._lines: list[tuple[int, str]] = []
        self._count = 0  # lines seen so far (the list keeps the last 2000)
        self._partial = ""
        self._level = 2

    def __call__(self, level: int, text: bytes | None, _user: Any) -> None:
        try:
            self._record(level, text)
        except KeyboardInterrupt:
            self.interrupted = True
        except Exception:  # logging must never take a llama.cpp call down
            pass

    def raise_interrupt(self) -> None:
        """Raise the KeyboardInterrupt a callback caught (main thread: only it gets them)."""
        if self.interrupted and threading.current_thread() is threading.main_thread():
            self.interrupted = False
            raise KeyboardInterrupt

    def _record(self, level: int, text: bytes | None) -> None:
        s = (text or b"").decode("utf-8", errors="replace")
        if level != CONT:  # a continuation keeps the previous line's level
            self._level = level
        self._partial += s
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._lines.append((self._level, line))
            self._count += 1
            for capture in self.captures:
                capture.append((self.level_name, line))
        del self._lines[:-2000]
        if self.verbose:
            print(s, end="", file=sys.stderr, flush=True)

    @property
    def level_name(self) -> str:
        """The :data:`LOG_LEVELS` name of the line being written."""
        return LOG_LEVELS.get(self._level, str(self._level))

    @property
    def partial(self) -> str:
        """Text logged after the last newline (a line not finished yet)."""
        return self._partial

    @property
    def count(self) -> int:
        """Lines seen so far; pass it to :meth:`since` later."""
        return self._count

    def since(self, count: int) -> list[tuple[int, str]]:
        """``(level, text)`` of the lines logged after :attr:`count` was ``count``."""
        return self._lines[len(self._lines) - min(self._count - count, len(self._lines)) :]

    def errors_since(self, count: int) -> str:
        """The last five warning / error lines logged after ``count``, joined with ``"; "``."""
        msgs = [s for lvl, s in self.since(count) if lvl in (WARN, ERROR) and s.strip()]
        return "; ".join(msgs[-5:]) or "no details in the log"


LOG_SINK = LogSink()
"""The process's one sink."""
_CALLBACKS: list[Any] = []  # the ctypes callback must stay alive as long as llama.cpp holds it
_previous_hook: list[Any] = []  # the sys.unraisablehook unraisable_hook hands other errors to


def unraisable_hook(unraisable: Any) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt that ctypes could not raise from the log
    callback is noted for :meth:`LogSink.raise_interrupt`; anything else goes on to the hook
    that was installed before."""
    if unraisable.object is LOG_SINK and issubclass(unraisable.exc_type, KeyboardInterrupt):
        LOG_SINK.interrupted = True
        return
    (_previous_hook[0] if _previous_hook else sys.__unraisablehook__)(unraisable)


def catch_dropped_interrupts() -> None:
    """Put :func:`unraisable_hook` in front of whatever ``sys.unraisablehook`` is now."""
    if sys.unraisablehook is not unraisable_hook:
        _previous_hook[:] = [sys.unraisablehook]
        sys.unraisablehook = unraisable_hook


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Raise, on the way out, a Ctrl+C that arrived while llama.cpp logged."""
    catch_dropped_interrupts()
    try:
        yield
    finally:
        LOG_SINK.raise_interrupt()


def install_log_sink(verbose: bool) -> None:
    """Point llama.cpp's, libmtmd's and libmtmd helper's log callbacks at :data:`LOG_SINK`.

    Set every time: llama-cpp-python installs its own callback when it is imported. ``verbose``
    prints each line to stderr as well.
    """
    import llama_cpp
    from llama_cpp import mtmd_cpp

    LOG_SINK.verbose = verbose
    catch_dropped_interrupts()
    if not _CALLBACKS:
        _CALLBACKS.append(llama_cpp.llama_log_callback(LOG_SINK))
    cb = _CALLBACKS[0]
    llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
    # llama-cpp-python 0.3.36 (pinned in pyproject.toml) binds both libmtmd setters
    mtmd_cpp.mtmd_log_set(cb, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(cb, ctypes.c_void_p(0))


@contextlib.contextmanager
def capture_log() -> Iterator[list[tuple[str, str]]]:
    """Collect llama.cpp / ggml log lines as ``(level, text)`` while the block runs.

    ``level`` is a :data:`LOG_LEVELS` name (``"warn"``, ``"error"``, ...; a ``cont`` line
    carries the level of the line it continues); ``text`` is one line without its newline.
    Nothing is printed meanwhile. The lines come from the process's one log sink, which stays
    installed afterwards (a reasoner loaded later still sees its own errors).
    """
    lines: list[tuple[str, str]] = []
    install_log_sink(LOG_SINK.verbose)
    LOG_SINK.captures.append(lines)
    try:
        yield lines
    finally:
        LOG_SINK.captures.remove(lines)
        if LOG_SINK.partial:  # a last line without its newline
            lines.append((LOG_SINK.level_name, LOG_SINK.partial))
