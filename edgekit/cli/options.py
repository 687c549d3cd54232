"""Reusable ``Annotated`` option types so every command spells shared options the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; existing files are replaced atomically).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (recorded in the manifest; same seed, same metrics).")]
Threads = Annotated[int | None, typer.Option("--threads", "-t", min=1, help="Inference threads (default: the device profile's).")]
ModelArg = Annotated[Path, typer.Argument(metavar="MODEL", help="Model file (.keras/.tflite/.onnx) or the artifact folder holding it.")]
DataDir = Annotated[Path, typer.Argument(metavar="DATA", help="Image folder: one sub-folder per class.")]


def print_listing(rows: list[dict], *, title: str, columns: tuple, cells, as_json: bool) -> None:
    """The listing commands' output: ``rows`` as JSON, or a table of ``cells(row)`` under ``columns``
    (names, or :class:`~edgekit.tables.Column` for optional ones left out of a narrow terminal)."""
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from edgekit.tables import Column, print_table

    print_table(title, [c if isinstance(c, Column) else Column(c) for c in columns], [list(cells(row)) for row in rows])
