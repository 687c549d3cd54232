"""The Typer application and the error boundary shared by every command module.

Each command lives in its own module under ``edgekit/cli/`` and registers itself on ``app``;
``main()`` maps :class:`~edgekit.errors.EdgekitError` to one line on stderr and its exit code.
Tracebacks appear only with ``--debug`` (or ``EDGEKIT_DEBUG=1``).
"""

from __future__ import annotations

import os
import signal
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


def _interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so atomic writers clean up their temp files.

    Explicit because a process started in the background by a non-interactive shell inherits an
    *ignored* SIGINT, and SIGTERM would otherwise kill the process without any cleanup.
    """

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning EdgekitError into a one-line message + exit code."""
    from edgekit.cli import commands  # noqa: F401  (registers every command on ``app``)
    from edgekit.errors import EdgekitError

    _interrupt_on_signals()
    try:
        # Outside standalone mode Typer *returns* exit codes (130 for Ctrl-C) instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except EdgekitError as exc:
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing half-written was left behind; rerun to resume", err=True)
        sys.exit(130)
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
