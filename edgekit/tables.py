"""Terminal tables every command shares: they fit the terminal (80 columns and up), numbers are never cut.

Number columns are right-aligned and never wrapped; text columns (names, paths, reasons) wrap
instead. Columns marked ``optional`` are left out, last first, when the table would not fit the
terminal's width (rich reads it from the terminal, or ``COLUMNS``; 80 when piped). Things that are
not rows of the table (a failed variant, an unavailable device) are printed once each below it,
on one line, cut at the terminal's edge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# The one sign convention for accuracy loss, used by every table header (terminal, reports, benchmarks).
DROP_HEADER = "drop pts (+ = loss)"
DROP_EXPLAINED = "top-1 points lost against the float model (positive = worse, negative = better)"


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = False
    optional: bool = False


def number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits but never in exponent form (0.655, 2.15, 12.3, 1234)."""
    if value is None:
        return "–"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def signed(value, decimals: int = 2) -> str:
    """A signed difference (``+1.25``, ``-0.27``); ``–`` when unknown."""
    return "–" if value is None else f"{float(value):+.{decimals}f}"


def percent(fraction, decimals: int = 2) -> str:
    """A fraction in [0, 1] as a percentage number without the sign (``76.34``); ``–`` when unknown."""
    return "–" if fraction is None else f"{float(fraction) * 100:.{decimals}f}"


def one_line(text: str) -> str:
    """A message as one line: its first non-empty line, whitespace collapsed."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[0]) if lines else ""


_LONGEST_TEXT = 20  # longer text (a path, a reason) wraps rather than pushing numbers out


def console():
    from rich.console import Console

    return Console(highlight=False)


def print_table(title: str, columns: list[Column], rows: list[list[str]], *, notes: list[str] = (),
                caption: str | None = None, out=None) -> None:
    """Print ``rows`` under ``columns`` fitted to the terminal, then each of ``notes`` on one line."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = out or console()
    kept = [i for i, column in enumerate(columns) if not column.optional]
    for i in (i for i, column in enumerate(columns) if column.optional):  # in order, while they fit
        if _needed_width(columns, rows, sorted(kept + [i])) <= out.width:
            kept = sorted(kept + [i])
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  title_justify="left", caption_justify="left")
    for i in kept:
        column = columns[i]
        if column.numeric:
            table.add_column(column.header, justify="right", no_wrap=True, min_width=_widest(column, rows, i))
        elif _widest(column, rows, i) <= _LONGEST_TEXT:  # a short name: kept whole, the long text wraps
            table.add_column(column.header, no_wrap=True, min_width=_widest(column, rows, i))
        else:
            table.add_column(column.header, overflow="fold", ratio=1)
    for row in rows:
        table.add_row(*(Text(row[i]) for i in kept))
    out.print(table)
    for note in notes:
        print_one_line(out, note)


def print_one_line(out, text: str, *, indent: int = 0) -> None:
    """``text`` as one line, cut with an ellipsis at the terminal's edge (the report has it in full)."""
    from rich.text import Text

    out.print(Text(" " * indent + one_line(text)), no_wrap=True, overflow="ellipsis", crop=True)


def _widest(column: Column, rows: list[list[str]], i: int) -> int:
    return max([len(row[i]) for row in rows] + [len(part) for part in column.header.split("\n")])


def _needed_width(columns: list[Column], rows: list[list[str]], indices: list[int]) -> int:
    """How wide the table is with whole numbers and text up to 20 characters unwrapped (3 per column gap)."""
    widths = []
    for i in indices:
        if columns[i].numeric:
            widths.append(_widest(columns[i], rows, i))
        else:
            widths.append(min(_LONGEST_TEXT, _widest(columns[i], rows, i)))
    return sum(widths) + 3 * (len(widths) - 1)
