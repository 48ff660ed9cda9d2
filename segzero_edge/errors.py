"""The runtime's exception types (a leaf module, so every layer can raise them).

- :class:`BundleError` (a ``ValueError``): a bundle is missing, incomplete, corrupt or from an
  unsupported schema; the message names the file.
- :class:`BackendError`: a backend failed during a call; the message names the backend and
  the stage.
- :class:`TensorRTUnavailable`: the ``tensorrt`` package cannot be imported here.
- :class:`CommandError`: a command-line problem the user can fix (one line, exit code 2).
"""

from __future__ import annotations


class BundleError(ValueError):
    """The bundle is missing, incomplete, corrupt or from an unsupported schema."""


class BackendError(RuntimeError):
    """A backend failed during a call; the message names the backend and the stage."""


class TensorRTUnavailable(RuntimeError):
    """The ``tensorrt`` Python package cannot be imported here."""


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class MissingExtra(CommandError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> object:
    """Import ``module`` or raise :class:`MissingExtra` saying ``what`` needs
    ``pip install 'segzero-edge[extra]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"{what} needs the [{extra}] extra ({e.name or module} is not installed): "
            f"pip install 'segzero-edge[{extra}]'"
        ) from None
