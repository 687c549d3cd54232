"""Progress bars on stderr for long work (silent when stderr is not a terminal or EDGEKIT_QUIET=1)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("EDGEKIT_QUIET")


def track(items: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar when interactive; plain iteration otherwise."""
    if not enabled():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield from progress.track(items, total=total, description=description)


def status(message: str) -> None:
    """One line of progress narration on stderr (suppressed with EDGEKIT_QUIET=1)."""
    if not os.environ.get("EDGEKIT_QUIET"):
        print(message, file=sys.stderr, flush=True)
