"""The Typer application that every command module registers itself on, and how a command line runs through it.

Each command lives in its own module under ``edgekit/cli/`` and registers itself on ``app``;
``run()`` parses a command line inside :func:`edgekit.cli.boundary.error_boundary`. The console entry
point is :func:`edgekit.cli.entry.main` (a plain ``edgekit predict`` skips Typer altogether).
"""

from __future__ import annotations

import os
import re
import sys

import typer
import typer.core

class _PlainFlags:
    """Boolean flags (``--int8``, ``--json``, ``--help``) take no value, so their help rows show no type; Typer 0.29
    prints ``<bool>`` there, as if they needed one. An empty metavar is what its help table shows instead."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_PlainFlags, typer.core.TyperCommand):
    """Usage lines in the usual ``edgekit profile [OPTIONS] MODEL`` form (Typer 0.29 writes ``{MODEL}``), and
    docstring paragraphs rewrapped to the terminal (Typer keeps each source line break inside a paragraph)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = re.sub(r"(?<!\n)\n(?!\n)", " ", self.help)

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [re.sub(r"^\{([^{}]*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


class _Group(_PlainFlags, typer.core.TyperGroup):
    """Commands listed in :data:`edgekit.cli.commands.HELP_ORDER`, not in the order their modules were imported
    (``quickstart`` is defined in ``cmd_run`` but comes first)."""

    def list_commands(self, ctx) -> list[str]:
        from edgekit.cli.commands import HELP_ORDER

        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER))


class _Typer(typer.Typer):
    """A Typer app whose commands all use :class:`_Command`."""

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="edgekit",
    cls=_Group,
    help="From a folder of photos to a small, fast, measured model on an edge device.\n\n"
    "Typical flow: finetune -> compress --int8 -> export/compile -> profile -> predict.\n"
    "Run `edgekit quickstart` for an offline demo on an embedded dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from edgekit import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and TensorFlow's native logs."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the edgekit version and exit."),
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
