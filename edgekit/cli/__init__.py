"""edgekit's command-line interface (a thin layer over :mod:`edgekit.api`).

``main`` is the console entry point; the Typer ``app`` is imported only when asked for, so a plain
``edgekit predict`` starts without Typer (see :mod:`edgekit.cli.entry`).
"""

from edgekit.cli.entry import main

__all__ = ["app", "main"]


def __getattr__(name: str):
    if name == "app":
        from edgekit.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
