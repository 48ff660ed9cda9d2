"""The package version (a leaf: imported by ``__init__`` and by whatever records it)."""

__version__ = "0.1.0"
