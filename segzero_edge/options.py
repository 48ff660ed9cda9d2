"""Checks of the numbers callers pass as options: refused up front, naming the option.

A wrong type (a ``str``, ``None``, a ``bool``), NaN or an infinity would otherwise pass a
comparison such as ``value >= 0`` (NaN compares false both ways) or fail deep inside a call,
after model work, with an error that names something else. The command line uses
:func:`finite_float` as an ``argparse`` type, so ``--fps nan`` is an argparse error naming
``--fps``.
"""

from __future__ import annotations

import argparse
import math
from numbers import Integral, Real


def real_number(
    name: str, value: object, *, minimum: float | None = None, above: float | None = None
) -> float:
    """``value`` as a finite ``float``; ``ValueError`` naming ``name`` for a non-number, a
    ``bool``, NaN, an infinity, a value below ``minimum`` or not above ``above``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    if above is not None and not number > above:
        raise ValueError(f"{name} must be > {above:g}, got {value!r}")
    return number


def whole_number(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an ``int``; ``ValueError`` naming ``name`` for a non-integer (a ``bool``,
    a ``float`` such as ``2.0``, a ``str``) or one below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def yes_no(name: str, value: object, *, optional: bool = False) -> bool | None:
    """``value`` when it is a ``bool`` (or ``None`` with ``optional``); ``ValueError`` naming
    ``name`` otherwise: a string such as ``"no"`` or ``"false"`` is truthy, so it would turn
    the option on."""
    if isinstance(value, bool) or (optional and value is None):
        return value
    allowed = "True, False or None" if optional else "True or False"
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def finite_float(text: str) -> float:
    """``argparse`` type: a finite number (``nan``, ``inf`` refused as argparse errors)."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return number


__all__ = ["finite_float", "real_number", "whole_number", "yes_no"]
