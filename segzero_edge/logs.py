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

    @property  # type: ignore[override]
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


def _install(level: int) -> None:
    """One stderr handler (ours) on each project logger, at ``level``; an earlier one of ours
    is replaced, handlers others added are kept."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _Stderr)]:
            logger.removeHandler(old)
        handler = _Stderr()
        handler.setFormatter(_Format())
        logger.addHandler(handler)
        logger.setLevel(level)


def configure(verbosity: int = 0, default: int = logging.WARNING) -> int:
    """Log the project's loggers to stderr for a command: ``SEGZERO_LOG_LEVEL`` (when set) or
    ``default``, moved ``verbosity`` steps (``-v`` = +1 = more, ``-q`` = -1 = less). Returns
    the level. ``ValueError`` for a bad ``SEGZERO_LOG_LEVEL``."""
    base = env_level()
    level = (default if base is None else base) - STEP * verbosity
    level = min(max(level, logging.DEBUG), logging.CRITICAL)
    _install(level)
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
