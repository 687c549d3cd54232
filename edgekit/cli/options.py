"""Reusable ``Annotated`` option types so every command spells shared options the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.predict_core import JSON, THREADS, OptionSpec

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; existing files are replaced atomically).")]


def typer_option(spec: OptionSpec):
    """The Typer option for an option spelled in a (Typer-free) :class:`OptionSpec` table."""
    return typer.Option(*spec.flags, help=spec.help, min=spec.minimum)


JsonFlag = Annotated[bool, typer_option(JSON)]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (recorded in the manifest; same seed, same metrics).")]
Threads = Annotated[int | None, typer_option(THREADS)]
ModelArg = Annotated[Path, typer.Argument(help="Model file (.keras/.tflite/.onnx) or the artifact folder holding it.")]
DataDir = Annotated[Path, typer.Argument(help="Image folder: one sub-folder per class.")]


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
