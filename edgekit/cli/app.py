"""The Typer application that every command module registers itself on, and how a command line runs through it.

Each command lives in its own module under ``edgekit/cli/`` and registers itself on ``app``;
``run()`` parses a command line inside :func:`edgekit.cli.boundary.error_boundary`. The console entry
point is :func:`edgekit.cli.entry.main` (a plain ``edgekit predict`` skips Typer altogether).
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="edgekit",
    help="From a folder of photos to a small, fast, measured model on an edge device.\n\n"
    "Typical flow: finetune -> compress --int8 -> export/compile -> profile -> predict.\n"
    "Run `edgekit quickstart` for an offline demo on an embedded dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and TensorFlow's native logs."),
) -> None:
    if debug:
        os.environ["EDGEKIT_DEBUG"] = "1"


def run(argv: list[str]) -> None:
    """Parse and run ``argv`` with Typer inside the shared error boundary (Typer's own errors print usage)."""
    from edgekit.cli import commands
    from edgekit.cli.boundary import error_boundary

    commands.register(argv)
    with error_boundary():
        try:
            # Outside standalone mode Typer *returns* exit codes (130 for Ctrl-C) instead of exiting.
            code = app(args=argv, standalone_mode=False)
            if code == 130:
                raise KeyboardInterrupt
            if isinstance(code, int) and code:
                sys.exit(code)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except typer.TyperException as exc:  # usage errors: unknown option, missing argument, bad value
            if not hasattr(exc, "show"):
                raise
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (kept here for callers of ``edgekit.cli.app.main``)."""
    from edgekit.cli.entry import main as entry_main

    entry_main(argv)
