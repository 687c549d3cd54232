"""The Typer application and the error boundary shared by every command module.

Each command lives in its own module under ``edgekit/cli/`` and registers itself on ``app``;
``main()`` maps :class:`~edgekit.errors.EdgekitError` to one line on stderr and its exit code.
Tracebacks appear only with ``--debug`` (or ``EDGEKIT_DEBUG=1``).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys

import typer
import typer.core

class _Command(typer.core.TyperCommand):
    """Usage lines in the usual ``edgekit profile [OPTIONS] MODEL`` form (Typer 0.29 writes ``{MODEL}``), and
    docstring paragraphs rewrapped to the terminal (Typer keeps each source line break inside a paragraph)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = re.sub(r"(?<!\n)\n(?!\n)", " ", self.help)

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [re.sub(r"^\{([^{}]*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


class _Typer(typer.Typer):
    """A Typer app whose commands all use :class:`_Command`."""

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="edgekit",
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


def _interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so atomic writers clean up their temp files.

    Explicit because a process started in the background by a non-interactive shell inherits an
    *ignored* SIGINT, and SIGTERM would otherwise kill the process without any cleanup.
    """

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "File too large", "Disk quota exceeded")


def _disk_full_error(exc: Exception):
    """An OutputError for a disk-full / file-size-limit failure raised by a library writing scratch files
    (onnx.save, TensorFlow's SavedModel writer) outside edgekit's atomic writers; None for anything else."""
    from edgekit.errors import OutputError

    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        where = f" {exc.filename}" if exc.filename else " a file (in --out or the temp folder)"
        reason = exc.strerror
    elif type(exc).__module__.startswith("tensorflow") and any(t in str(exc) for t in _DISK_FULL_TEXTS):
        where, reason = " a file (in --out or the temp folder)", next(t for t in _DISK_FULL_TEXTS if t in str(exc))
    else:
        return None
    return OutputError(f"could not write{where}: {reason}",
                       fix="free disk space (or raise `ulimit -f`), or point --out / TMPDIR at a disk with room")


_WARNED: set[str] = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``warning: <message>`` on stderr, once each, without Python's category and source path
    (a folder scanned by several steps of one command would otherwise warn once per step)."""
    text = " ".join(str(message).split())
    if text in _WARNED:
        return
    _WARNED.add(text)
    typer.echo(f"warning: {text}" if not os.environ.get("EDGEKIT_DEBUG") else
               f"warning: {text} ({category.__name__} at {filename}:{lineno})", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning EdgekitError into a one-line message + exit code."""
    import warnings

    from edgekit.cli import commands  # noqa: F401  (registers every command on ``app``)
    from edgekit.errors import EdgekitError

    _interrupt_on_signals()
    warnings.showwarning = _one_line_warning
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
    except Exception as exc:
        error = _disk_full_error(exc)
        if error is None or os.environ.get("EDGEKIT_DEBUG"):
            raise
        typer.echo(f"error: {error.one_line()}", err=True)
        sys.exit(error.exit_code)
