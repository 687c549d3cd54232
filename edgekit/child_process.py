"""Run one function in a fresh child process, so that a native crash becomes an error instead of killing edgekit.

Converters, onnxruntime and TFLite interpreters can die inside C++ on a bad model or NaN weights
(segfault, abort), taking the caller with them. :func:`run_isolated` runs ``function(*args)`` in a
new Python process started by ``concurrent.futures.ProcessPoolExecutor`` with multiprocessing's
``spawn`` context (a fresh interpreter: no forked TensorFlow threads or locks):

- the child's return value comes back pickled; an :class:`EdgekitError` it raises comes back as itself,
  any other exception as ``error`` quoting its last line;
- a crashed child surfaces as ``BrokenProcessPool`` and becomes ``error`` naming ``what``, the fatal
  signal (the child runs :mod:`faulthandler`) and the fix;
- a child past ``timeout``, or a parent interrupted (Ctrl-C, SIGTERM), kills the child first.

The child's stdout and stderr go to a log file, because TensorFlow's banner and converter chatter
must not reach the terminal or a ``--json`` stdout; its last lines are quoted on failure, and the whole
log is printed with ``EDGEKIT_DEBUG=1``.

Spawn normally re-runs the caller's main script in the child (as ``__mp_main__``), which would make
every plain script that calls edgekit (``Predictor("m.tflite")`` at top level, no
``if __name__ == "__main__":``) fail, and would load the script's imports (TensorFlow, the CLI) into
each child. The functions run here all live in importable modules and need nothing from the script,
so the child is started with the script hidden (:func:`_main_script_hidden`).

Inside :func:`reusing_children` (a recipe run, one ``compress``), calls with the same ``env`` share one
child instead of each starting its own: a TensorFlow conversion child spends about 7 s of CPU
importing TensorFlow before it converts anything, and a pipeline converts in three stages. A child
that crashed or timed out is killed and dropped, so the next call starts a fresh one; a child whose
function raised an ordinary exception is still sound and is kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import faulthandler
import multiprocessing
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from edgekit.errors import ConversionError, EdgekitError

T = TypeVar("T")
LOG_TAIL_LINES = 3


def run_isolated(function: Callable[..., T], /, *args: Any, what: str, fix: str,
                 error: type[EdgekitError] = ConversionError, timeout: float | None = None,
                 env: dict[str, str] | None = None, fork: bool = False) -> T:
    """``function(*args)`` computed in a spawned child process; a crash, timeout or failure there is ``error``.

    ``function`` and ``args`` must be picklable (a function of an importable module, not of the main
    script; ``functools.partial`` of one); ``env`` is set in the child before ``function`` runs (so
    before the imports it does). The child is fresh unless :func:`reusing_children` shares one.
    ``fork`` forks this process instead (~0.03 s of CPU instead of a fresh interpreter's ~0.3 s): only
    for a caller that knows nothing here can break in a fork (no TensorFlow, no runtime threads).
    """
    key = (fork, *sorted((env or {}).items()))
    worker = (_shared.pop(key, None) if _shared is not None else None) or _Worker(dict(env or {}), fork=fork)
    sound, done = False, False
    try:
        future = worker.submit(function, args)
        try:
            result = future.result(timeout=timeout)
        except BrokenProcessPool:
            raise error(f"{what} {_crash_description(worker.log, worker.reap())}", fix=fix) from None
        except concurrent.futures.TimeoutError:
            raise error(f"{what} did not finish within {timeout:.0f} s", fix=fix) from None
        except EdgekitError:
            sound = True
            raise
        except Exception as exc:  # the function raised in the child: anything its libraries raise
            sound = True
            raise error(f"{what} failed: {type(exc).__name__}: {_last_line(str(exc))}", fix=fix) from exc
        sound = done = True
        return result
    finally:
        if not done:
            _show_log_when_debugging(worker.log)
        if sound and _shared is not None:
            _shared[key] = worker
        else:
            worker.close(kill=not sound)


_shared: dict[tuple, _Worker] | None = None  # reusing_children()'s, by start method + environment


@contextlib.contextmanager
def reusing_children() -> Iterator[None]:
    """Let every :func:`run_isolated` call in the block reuse one child per environment; stop them at the end.

    Nested blocks share the outermost one's children.
    """
    global _shared
    if _shared is not None:
        yield
        return
    _shared = {}
    try:
        yield
    finally:
        workers, _shared = _shared, None
        for worker in workers.values():
            worker.close()


class _Worker:
    """One child (a single-process ``ProcessPoolExecutor``, spawned or forked) and the log its output goes to."""

    def __init__(self, env: dict[str, str], *, fork: bool = False):
        self._tmp = tempfile.TemporaryDirectory(prefix="edgekit-child-")
        self.log = Path(self._tmp.name) / "child.log"
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
            initializer=_start_child, initargs=(str(self.log), env))
        self.children: list = []

    def submit(self, function: Callable[..., T], args: tuple) -> concurrent.futures.Future:
        if self.log.exists():
            os.truncate(self.log, 0)  # a failure quotes this call's output, not an earlier call's
        with _main_script_hidden():  # the pool starts its spawn process inside the first submit()
            future = self.pool.submit(function, *args)
        # The pool's own process table: Python 3.14 has ProcessPoolExecutor.kill_workers(), 3.11 does not.
        self.children = list(self.pool._processes.values())
        return future

    def reap(self) -> list[int]:
        """Exit codes of the pool's children once it has stopped: for a pool broken by a child's death.

        The pool's manager thread reaps a dead child; joining it from here as well would race that thread
        (two waitpid calls: the loser reads no status), so let the pool finish and read what it reaped.
        """
        self.pool.shutdown(wait=True, cancel_futures=True)
        return [child.exitcode for child in self.children if child.exitcode is not None]

    def close(self, *, kill: bool = False) -> None:
        if kill:
            for child in self.children:
                child.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._tmp.cleanup()


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Present an empty ``__main__`` while a spawn child starts, so it does not re-run the caller's script.

    multiprocessing reads ``sys.modules["__main__"]`` (its ``__spec__``/``__file__``) when it starts a
    process and has no option to skip it; nothing else reads it in that instant.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _start_child(log_path: str, env: dict[str, str]) -> None:
    """Pool initializer, in the child: the environment, stdout/stderr into the log, faulthandler on."""
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    faulthandler.enable()  # a fatal signal prints "Fatal Python error: Segmentation fault" and a traceback


def _crash_description(log: Path, codes: list[int]) -> str:
    """Why the child died: the fatal signal faulthandler logged, else its exit status and last log lines."""
    if not log.exists():
        return "crashed while starting (before it could run)"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    fatal = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Fatal Python error:")), None)
    if fatal:
        return f"crashed ({fatal})"
    status = f"signal {-codes[0]}" if codes and codes[0] < 0 else f"exit {codes[0]}" if codes else "no exit status"
    tail = " | ".join(lines[-LOG_TAIL_LINES:])
    return f"crashed ({status}){': ' + tail if tail else ''}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _show_log_when_debugging(log: Path) -> None:
    if os.environ.get("EDGEKIT_DEBUG") and log.exists():
        sys.stderr.write(log.read_text(errors="replace"))
