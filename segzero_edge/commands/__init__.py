"""Subcommands of the segzero-edge CLI."""
