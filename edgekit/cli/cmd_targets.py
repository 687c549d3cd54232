"""`edgekit targets`: every export target, what it needs, and whether this machine can produce it."""

from __future__ import annotations

import json

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag


@app.command("targets")
def targets_command(as_json: JsonFlag = False) -> None:
    """List export targets: file suffix, command, options, requirements and availability here (and why not)."""
    from edgekit.targets import list_targets

    rows = list_targets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgekit targets")
    for column in ("target", "suffix", "command", "options", "needs", "available here"):
        table.add_column(column, overflow="fold")
    for row in rows:
        verdict = "[green]yes[/green]" if row["available"] else f"[red]no[/red]: {row['reason']}"
        table.add_row(row["name"], row["suffix"], f"edgekit {row['command']}", " ".join(row["options"]) or "-",
                      ", ".join(row["needs"]), verdict)
    Console().print(table)
