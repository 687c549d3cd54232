"""edgekit's command-line interface (a thin layer over :mod:`edgekit.api`).

``main`` is the console entry point. The Typer app lives in :mod:`edgekit.cli.app` and is imported
only when needed, so a plain ``edgekit predict`` starts without Typer (see :mod:`edgekit.cli.entry`).
"""

from edgekit.cli.entry import main

__all__ = ["main"]
