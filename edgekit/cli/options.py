"""Reusable ``Annotated`` option types so every command spells shared options the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; existing files are replaced atomically).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (recorded in the manifest; same seed, same metrics).")]
Threads = Annotated[int | None, typer.Option("--threads", "-t", min=1, help="Inference threads (default: the device profile's).")]


def model_argument(formats: str):
    """The MODEL argument of a command, naming the formats that command accepts (help must not offer others)."""
    return Annotated[Path, typer.Argument(metavar="MODEL", help=f"Model file ({formats}) or the artifact folder "
                                                                "holding it.")]


ModelArg = model_argument(".keras/.tflite/.onnx")
DataDir = Annotated[Path, typer.Argument(metavar="DATA", help="Image folder: one sub-folder per class.")]


def print_listing(rows: list[dict], *, title: str, columns: tuple[str, ...], cells, as_json: bool) -> None:
    """The listing commands' output: ``rows`` as JSON, or a rich table of ``cells(row)`` under ``columns``."""
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*cells(row))
    Console().print(table)
