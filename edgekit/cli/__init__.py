"""edgekit's command-line interface (a thin layer over :mod:`edgekit.api`)."""

from edgekit.cli.app import app, main

__all__ = ["app", "main"]
