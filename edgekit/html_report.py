"""Building blocks shared by every report (run/sweep, profile, monitor): one HTML page style and the
Markdown/HTML tables, so every report reads the same and fits a 1280-px browser window.

A report is a self-contained HTML file (PNGs embedded as data URIs): summary first (what was
picked, under which constraints, the plot), the long tables after. Long text (paths, reasons)
wraps inside its cell; numbers keep to one line; images shrink to the page width.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1.5em 2em;max-width:1240px;
     color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0 .6em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
.summary{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:.8em 1.2em;margin-bottom:1em}
.summary dl{display:grid;grid-template-columns:max-content 1fr;gap:.25em 1.2em;margin:0}
.summary dt{font-weight:600}.summary dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;max-width:100%;margin:.4em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:break-word}
td.short,th.short{white-space:nowrap}td.long{overflow-wrap:anywhere;min-width:16em}
th{background:#f6f8fa}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.pick td{background:#fff8c5;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.images{display:flex;flex-wrap:wrap;gap:1em}.images img{max-width:calc(50% - .5em);margin:0}
ul.notes li{overflow-wrap:anywhere;margin-bottom:.3em}
code{background:#f4f4f4;padding:1px 4px;overflow-wrap:anywhere}
pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
.muted{color:#57606a}
"""


SHORT_CELL = 24  # cells up to this many characters stay on one line; longer text wraps anywhere


def escape(value) -> str:
    return html.escape(str(value))


def page(title: str, *parts: str) -> str:
    """A complete HTML document: ``title`` as <title> and <h1>, then ``parts`` (already HTML) in order."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def summary(items: list[tuple[str, str]]) -> str:
    """The box at the top of a report: label/value pairs (values are plain text, escaped here)."""
    rows = "".join(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in items)
    return f"<section class='summary'><dl>{rows}</dl></section>"


def heading(text: str) -> str:
    return f"<h2>{escape(text)}</h2>"


def paragraph(text: str, *, muted: bool = False) -> str:
    return f"<p{' class=muted' if muted else ''}>{escape(text)}</p>"


def notes(items: list[str]) -> str:
    """A bulleted list of full-length messages (e.g. why a variant or device was not measured)."""
    return "<ul class='notes'>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def table(header: list[str], rows: list[list], *, numeric: frozenset[int] = frozenset(),
          highlight: set[int] = frozenset()) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned on one line, rows in ``highlight`` marked."""
    def cell(tag: str, i: int, value) -> str:
        kind = "num" if i in numeric else "short" if len(str(value)) <= SHORT_CELL else "long"
        return f"<{tag} class={kind}>{escape(value)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
    body = "".join(f"<tr{' class=pick' if r in highlight else ''}>" + "".join(cell("td", i, c) for i, c in enumerate(row))
                   + "</tr>" for r, row in enumerate(rows))
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def image(path: Path, alt: str) -> str:
    """A PNG embedded as a data URI, so the report is one self-contained file."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def images(paths: list[Path]) -> str:
    """Several PNGs side by side, wrapping to the page width."""
    return "<div class='images'>" + "".join(image(p, Path(p).stem.replace("_", " ")) for p in paths) + "</div>"


def markdown_table(header: list[str], rows: list[list], *, numeric: frozenset[int] = frozenset()) -> str:
    """The same table as Markdown (pipes in cells escaped; ``numeric`` columns right-aligned)."""
    lines = ["| " + " | ".join(h.replace("\n", " ") for h in header) + " |",
             "|" + "".join("---:|" if i in numeric else "---|" for i in range(len(header)))]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)
