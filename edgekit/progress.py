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


def time_left(seconds_per_step: float, steps_left: int, *, at_most: bool = False) -> str:
    """``about 40 s left`` (or ``at most ...``) for narration lines of searches whose steps take similar time."""
    if steps_left <= 0:
        return "last step"
    seconds = seconds_per_step * steps_left
    amount = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
    return f"{'at most' if at_most else 'about'} {amount} left ({steps_left} step(s))"
