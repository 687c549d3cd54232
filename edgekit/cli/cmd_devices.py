"""`edgekit devices`: the device profiles known here and whether each can run on this machine."""

from __future__ import annotations

import json

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag


@app.command("devices")
def devices_command(as_json: JsonFlag = False) -> None:
    """List device profiles (built-in, ./devices/*.yaml, $EDGEKIT_DEVICES) and whether each is available here.

    Availability is checked without loading a model: delegate libraries, GPU adapters and execution
    providers for local devices; an SSH connection (short timeout) for remote ones.
    """
    from edgekit.devices import list_devices

    rows = []
    for device in list_devices():
        ok, reason = device.available()
        rows.append({**device.to_dict(), "available": ok, "reason": reason})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgekit devices")
    for column in ("name", "runtime", "accelerator", "threads", "transport", "available here"):
        table.add_column(column)
    for row in rows:
        transport = row["transport"] if row["transport"] == "local" else f"ssh {row['ssh']['user']}@{row['ssh']['host']}"
        table.add_row(row["name"], row["runtime"], row["accelerator"], str(row["threads"] or "all cores"), transport,
                      ("yes: " if row["available"] else "no: ") + row["reason"])
    Console().print(table)
