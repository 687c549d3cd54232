"""The CLI's error boundary, without Typer (so the fast ``edgekit predict`` path shares it).

:class:`~edgekit.errors.EdgekitError` becomes one line on stderr and its exit code; Ctrl-C and
SIGTERM become exit 130 after atomic writers cleaned up; a full disk hit inside a library becomes
an :class:`~edgekit.errors.OutputError`; warnings print as one line each. Tracebacks appear only with
``--debug`` (``EDGEKIT_DEBUG=1``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import warnings
from collections.abc import Iterator

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "File too large", "Disk quota exceeded")


def _interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so atomic writers clean up their temp files.

    Explicit because a process started in the background by a non-interactive shell inherits an
    *ignored* SIGINT, and SIGTERM would otherwise kill the process without any cleanup.
    """

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)


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
    print(f"warning: {text}" if not os.environ.get("EDGEKIT_DEBUG") else
          f"warning: {text} ({category.__name__} at {filename}:{lineno})", file=sys.stderr)


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Run a command: EdgekitError, interruption and a full disk become one line on stderr and an exit code."""
    from edgekit.errors import EdgekitError

    _interrupt_on_signals()
    warnings.showwarning = _one_line_warning
    try:
        yield
    except EdgekitError as exc:
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        print(f"error: {exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left behind; rerun to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        error = _disk_full_error(exc)
        if error is None or os.environ.get("EDGEKIT_DEBUG"):
            raise
        print(f"error: {error.one_line()}", file=sys.stderr)
        sys.exit(error.exit_code)
