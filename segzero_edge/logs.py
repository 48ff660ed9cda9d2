"""The project's log: Python ``logging`` under the ``segzero_edge``, ``segzero_export``,
``segzero_bench`` and ``segzero_train`` loggers, written to stderr (stdout is for results).

As a library the packages log through ``logging.getLogger(__name__)`` and print nothing
unless the application configures logging, or ``SEGZERO_LOG_LEVEL`` is set (a level name,
``DEBUG`` ... ``ERROR``, or a number): ``import segzero_edge`` then sends these loggers to
stderr at that level. The ``segzero-edge`` CLI calls :func:`configure`: its ``-v`` / ``-q``
flags move the level one step from the command's default (``WARNING`` for the commands whose
result goes to stdout, ``INFO`` for the long builds: ``export``, ``build-engines``,
``bench``); ``SEGZERO_LOG_LEVEL`` replaces the default, the flags still move it.
"""

from __future__ import annotations

import logging
import os
import sys

LOG_LEVEL_ENV = "SEGZERO_LOG_LEVEL"
LOGGERS = ("segzero_edge", "segzero_export", "segzero_bench", "segzero_train")
"""The project's top-level loggers (one per package of the distribution)."""
STEP = 10
"""One ``-v`` / ``-q``: one ``logging`` level (DEBUG, INFO, WARNING, ERROR)."""


def parse_level(text: str, source: str = LOG_LEVEL_ENV) -> int:
    """``text`` (a level name in any case, or a number) as a ``logging`` level; ``ValueError``
    naming ``source`` otherwise."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise ValueError(
            f"{source}={text!r} is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )
    return level


def env_level() -> int | None:
    """The level ``SEGZERO_LOG_LEVEL`` names, ``None`` when unset or empty; ``ValueError``
    for anything else."""
    text = os.environ.get(LOG_LEVEL_ENV, "")
    return parse_level(text) if text.strip() else None


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is when a record comes (a test's capture,
    a redirected stream), never a stream kept from an earlier call."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ sets it
        pass


class _Format(logging.Formatter):
    """INFO lines as the message alone; others with their level (``warning: ...``), DEBUG
    with the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return text
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {text}"
        return f"{record.levelname.lower()}: {text}"


def _handler() -> _Stderr:
    handler = _Stderr()
    handler.setFormatter(_Format())
    return handler


def _drop_ours(logger: logging.Logger) -> None:
    for old in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(old)


def _install(level: int) -> None:
    """Library use: one stderr handler (ours) on each project logger, at ``level``; an
    earlier one of ours is replaced, handlers others added are kept."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        _drop_ours(logger)
        logger.addHandler(_handler())
        logger.setLevel(level)


def configure(verbosity: int = 0, default: int = logging.WARNING) -> int:
    """Log to stderr for a command: the project's loggers at ``SEGZERO_LOG_LEVEL`` (when set)
    or ``default``, moved ``verbosity`` steps (``-v`` = +1 = more, ``-q`` = -1 = less); other
    libraries' warnings too (errors only below WARNING). Returns the level.

    The command owns the process's logging, so the handler goes on the root logger (an
    earlier one of ours is replaced): a library that calls ``logging.basicConfig`` later
    then adds no second handler, and records still reach other handlers on the way (pytest's
    capture). ``ValueError`` for a bad ``SEGZERO_LOG_LEVEL``."""
    base = env_level()
    level = (default if base is None else base) - STEP * verbosity
    level = min(max(level, logging.DEBUG), logging.CRITICAL)
    root = logging.getLogger()
    _drop_ours(root)
    root.addHandler(_handler())
    root.setLevel(max(level, logging.WARNING))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        _drop_ours(logger)  # one set at import by SEGZERO_LOG_LEVEL would print twice
        logger.setLevel(level)
    return level


def configure_from_env() -> None:
    """At import: when ``SEGZERO_LOG_LEVEL`` is set, log to stderr at that level. A value that
    is not a level is ignored here (the CLI refuses it with a one-line error)."""
    try:
        level = env_level()
    except ValueError:
        return
    if level is not None:
        _install(level)


__all__ = ["LOGGERS", "LOG_LEVEL_ENV", "configure", "configure_from_env", "env_level"]
