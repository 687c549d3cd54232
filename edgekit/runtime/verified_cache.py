"""Remember, across processes, which model files passed the subprocess verification.

:func:`edgekit.runtime.safety.verify_tflite` loads a model in a child Python process so that a
crash in native code becomes an error; that child costs as much as the prediction itself. Its
verdict depends only on the file's bytes and the runtime that loaded them, so a success is kept
as an empty marker file named by the file's sha256 and the runtime's version in the user's
cache (``$XDG_CACHE_HOME/edgekit/verified``, default ``~/.cache/edgekit/verified``). A changed
or tampered file has another hash and is verified again; failures are never remembered. Set
``EDGEKIT_NO_VERIFY_CACHE=1`` to verify every time. Markers are written atomically (temp file +
rename), and an unwritable cache only costs the next run another verification.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """Where verdicts are kept (follows the XDG base-directory convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgekit" / "verified"


@functools.cache
def _runtime_version() -> str:
    """The TFLite runtime that verification uses, with its version (a new runtime re-verifies every model)."""
    from edgekit.runtime.backends import tflite_runtime_module

    name, module = tflite_runtime_module()
    package = sys.modules.get(getattr(module, "__name__", "").split(".")[0])
    return f"{name}-{getattr(package, '__version__', 'unknown')}"


def _marker(digest: str) -> Path:
    return cache_dir() / f"{digest}.{_runtime_version()}"


def is_verified(digest: str) -> bool:
    """True when a model with this sha256 passed verification under the installed runtime before."""
    if os.environ.get("EDGEKIT_NO_VERIFY_CACHE"):
        return False
    return _marker(digest).is_file()


def remember(digest: str) -> None:
    """Record that the model with this sha256 passed verification (best effort, atomic)."""
    if os.environ.get("EDGEKIT_NO_VERIFY_CACHE"):
        return
    marker = _marker(digest)
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        temp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
        temp.write_bytes(b"")
        os.replace(temp, marker)
