"""The console entry point: a plain ``edgekit predict`` runs without importing Typer (fast start on a
device), every other command line goes to the Typer app. See :mod:`edgekit.cli.predict_core`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); errors become one line + exit code."""
    from edgekit.cli.predict_core import parse_plain

    args = sys.argv[1:] if argv is None else list(argv)
    plain = parse_plain(args)
    if plain is None:
        from edgekit.cli.app import run

        run(args)
        return
    from edgekit.cli.boundary import error_boundary
    from edgekit.cli.predict_core import run_predict

    with error_boundary():
        run_predict(**plain)
